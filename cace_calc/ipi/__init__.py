"""i-PI integration: a socket driver, an in-process potential, and input/output helpers.

- :class:`CACEDriver` / :func:`run_driver`: serve a running i-PI over a unix or inet socket
  (also ``cace-calc ipi``); several drivers may serve one run.
- ``cace_calc/ipi/inprocess.py``: the ``<ffdirect>`` custom PES evaluating all beads of a step
  in one batched call (loaded by i-PI from its path).
- :mod:`cace_calc.pimd`: write inputs, launch i-PI with drivers, parse the results.
- :mod:`cace_calc.ipi.watch`: a committee driver's watch of the calibrated force uncertainty
  (log per call, one warning past the model's threshold, a soft stop through i-PI's EXIT file).
"""

from .bridge import IPIEvaluator
from .driver import CACEDriver, run_driver
from .protocol import DriverProtocolError, IPIConnectionError

__all__ = ["CACEDriver", "DriverProtocolError", "IPIConnectionError", "IPIEvaluator", "run_driver"]
