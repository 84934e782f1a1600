"""i-PI integration: a socket driver, an in-process potential, and input/output helpers.

- :class:`CACEDriver` / :func:`run_driver`: serve a running i-PI over a unix or inet socket
  (also ``cace-calc ipi``); several drivers may serve one run.
- ``cace_calc/ipi/inprocess.py``: the ``<ffdirect>`` custom PES evaluating all beads of a step
  in one batched call (loaded by i-PI from its path).
- :mod:`cace_calc.pimd`: write inputs, launch i-PI with drivers, parse the results.
"""

from .bridge import IPIEvaluator
from .driver import CACEDriver, run_driver
from .protocol import DriverProtocolError, IPIConnectionError

__all__ = ["CACEDriver", "DriverProtocolError", "IPIConnectionError", "IPIEvaluator", "run_driver"]
