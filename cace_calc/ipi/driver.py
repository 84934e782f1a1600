"""A CACE force provider for i-PI over its socket protocol (unix or inet).

The server asks ``STATUS`` and the driver answers ``NEEDINIT`` (before ``INIT``), ``READY``
or ``HAVEDATA`` (after ``POSDATA``). ``INIT`` carries the bead index and the parameter
string of i-PI's ``<ffsocket>`` (and ``batch_size:N`` when i-PI batches several structures
per exchange); ``POSDATA`` carries the cell (``h`` and its inverse, 3x3 float64 each), the
atom count and the positions; ``GETFORCE`` is answered with ``FORCEREADY``, the energy,
the atom count, the forces, the virial and an "extra" string; ``EXIT`` ends the run.

With ``committee=True`` the extra string is the JSON that i-PI's ``<ffcommittee>`` with
``<parse_json>true</parse_json>`` unpacks into one member per readout head (``committee_pot``,
``committee_force``, ``committee_virial``, atomic units); energy, forces and virial are the
members' means. ``committee: true`` in the ``<ffsocket>``'s parameters (as written by
:mod:`cace_calc.pimd`) turns this on at INIT. A committee driver also watches the calibrated
per-atom force uncertainty of every call (:class:`cace_calc.ipi.watch.ForceUncertaintyWatch`):
it warns once past the model's threshold, can log the largest of each call, and can make i-PI
stop (``max_uncertainty``).

i-PI sends no element names, so the driver takes them from a template structure (same
atom order as i-PI's input) or from ``symbols: OHH...`` in the ``<ffsocket>``'s
``<parameters>`` (as written by :mod:`cace_calc.pimd`).
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from ..calculator import CACECalculator
from ..model import CACE
from .bridge import IPIEvaluator, committee_calculator
from .protocol import DEFAULT_SOCKETS_PREFIX, DriverProtocolError, IPIConnection, header
from .watch import EXIT_FILE, ForceUncertaintyWatch, model_force_threshold

_SYMBOL = re.compile(r"[A-Z][a-z]?")


def parse_init_string(text: str) -> dict[str, str]:
    """The ``key: value`` pairs of an i-PI INIT string (i-PI writes ``" k : v , k : v , "``)."""
    out = {}
    for token in text.split(","):
        key, sep, value = token.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def symbols_to_numbers(symbols: str) -> np.ndarray:
    """Atomic numbers from a compact symbol string such as ``"OHHOHH"``."""
    found = _SYMBOL.findall(symbols)
    if "".join(found) != symbols.replace(" ", ""):
        raise ValueError(f"cannot read chemical symbols from {symbols!r}")
    try:
        return np.array([atomic_numbers[s] for s in found], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"unknown chemical symbol {e.args[0]!r} in {symbols!r}") from None


def _parse_pbc(text: str) -> np.ndarray:
    flags = [c.upper() == "T" for c in text.strip() if c.upper() in "TF"]
    if text.strip().lower() in ("true", "false"):
        flags = [text.strip().lower() == "true"] * 3
    if len(flags) != 3:
        raise ValueError(f"cannot read pbc from {text!r} (expected e.g. TTT or FFF)")
    return np.array(flags)


# Bounds on what the server may announce, so that a corrupt or hostile message cannot make the
# driver allocate without limit: an INIT string (i-PI's parameters, e.g. one symbol per atom),
# the number of structures (beads) in one batched message and the atoms in all of them.
MAX_INIT_BYTES = 1 << 26
MAX_BATCH = 100_000
MAX_ATOMS_PER_MESSAGE = 100_000_000


class CACEDriver:
    """i-PI socket client evaluating a CACE model.

    Parameters
    ----------
    model: a pretrained model name, a model file path, a loaded :class:`cace_calc.CACE`, or a
        :class:`CACECalculator` (used as is).
    template: an ASE Atoms (or a file ASE reads) with i-PI's atoms in the same order; gives
        the elements and the periodicity. Without it the elements come from i-PI's INIT string.
    device, dtype: as for :class:`CACECalculator`.
    committee: also send every readout head's energy, forces and virial for i-PI's
        ``<ffcommittee>`` (see :meth:`IPIEvaluator.compute_committee`); one backward pass per
        head. A model with a single head raises ``ValueError`` naming it.
    uncertainty_log: in committee mode, write the largest calibrated per-atom force sigma of
        each call (eV/A, its structure and atom) and the events to this file (see
        :mod:`cace_calc.ipi.watch`); implies ``committee``.
    max_uncertainty: eV/A; when an atom's force sigma passes it, create ``exit_file`` (i-PI's
        ``EXIT``: run the driver in i-PI's folder), so that i-PI ends the run softly after the
        current step, and the structures of that call to ``uncertain.extxyz`` beside it;
        implies ``committee``.
    say: where the watch's messages go (default: stderr, prefixed ``cace-calc ipi:``); it
        warns once when the largest sigma passes the model's threshold (metadata
        ``uncertainty.forces_threshold_ev_per_a``, set for the cheap estimate and used as is).

    Unknown elements raise :class:`cace_calc.errors.UnsupportedElementError` here (with a
    template) or at i-PI's INIT. ``n_structures`` counts the structures evaluated; ``watch``
    (committee mode, after the first call) holds the largest force sigma.
    """

    def __init__(self, model: str | os.PathLike | CACE | CACECalculator, *,
                 template: Atoms | str | os.PathLike | None = None, device: str = "auto",
                 dtype: str = "float64", committee: bool = False,
                 uncertainty_log: str | os.PathLike | None = None, max_uncertainty: float | None = None,
                 exit_file: str | os.PathLike = EXIT_FILE, say=None):
        if max_uncertainty is not None and not (np.isfinite(max_uncertainty) and max_uncertainty > 0):
            raise ValueError(f"max_uncertainty must be a positive force sigma in eV/A, got {max_uncertainty!r}")
        self.committee = bool(committee or uncertainty_log is not None or max_uncertainty is not None)
        self.watch_options = {"stop_above": max_uncertainty, "log_path": uncertainty_log, "exit_file": exit_file,
                              "say": say or _say}
        self.watch: ForceUncertaintyWatch | None = None
        if self.committee:
            self.calculator = committee_calculator(model, device=device, dtype=dtype)
        elif isinstance(model, CACECalculator):
            self.calculator = model
        else:
            self.calculator = CACECalculator(model, device=device, dtype=dtype)
        if template is not None and not isinstance(template, Atoms):
            from ase.io import read

            from ..data import resolve_structure_file

            template = read(resolve_structure_file(template))  # a file or a shipped structure name
        self.template = template
        self.evaluator = None if template is None else IPIEvaluator.from_atoms(self.calculator, template)
        self.n_structures = 0
        self.n_messages = 0

    def run(self, *, unix: str | None = None, host: str | None = None, port: int | None = None,
            sockets_prefix: str = DEFAULT_SOCKETS_PREFIX, wait: float = 0.0,
            timeout: float | None = None) -> int:
        """Connect to i-PI and answer its requests until it sends EXIT.

        Address: ``unix=NAME`` (socket file ``sockets_prefix + NAME``, i-PI's convention) or
        ``host=HOST, port=N``. ``wait`` (s): retry the connection while i-PI starts up.
        ``timeout`` (s): give up when the server is silent that long (default: wait forever).
        Returns the number of structures evaluated. Raises
        :class:`cace_calc.ipi.IPIConnectionError` when no server answers or the server goes
        away mid-run, and :class:`cace_calc.ipi.DriverProtocolError` on a malformed exchange.
        """
        conn = IPIConnection.connect(unix=unix, host=host, port=port, sockets_prefix=sockets_prefix,
                                     wait=wait, timeout=timeout)
        try:
            with conn:
                self._serve(conn)
        finally:
            if self.watch is not None:
                self.watch.close()
        return self.n_structures

    def _init(self, conn: IPIConnection) -> int:
        conn.recv_int()  # replica (bead) index: every bead has the same composition
        length = conn.recv_int()
        if not 0 <= length <= MAX_INIT_BYTES:
            raise DriverProtocolError(f"i-PI protocol error: INIT announced a parameter string of {length} "
                                      f"bytes (expected 0 to {MAX_INIT_BYTES})")
        text = conn.recv_bytes(length).decode("utf-8", errors="replace")
        pars = parse_init_string(text)
        try:
            batch = int(pars.get("batch_size", 1))
        except ValueError:
            raise DriverProtocolError(f"i-PI protocol error: INIT announced batch_size "
                                      f"{pars['batch_size'][:40]!r}, not an integer") from None
        if not 1 <= batch <= MAX_BATCH:
            raise DriverProtocolError(f"i-PI protocol error: INIT announced batch_size {batch} (expected 1 to "
                                      f"{MAX_BATCH} structures per message)")
        if pars.get("committee", "false").lower() == "true" and not self.committee:
            self._use_committee()  # the input is an <ffcommittee> written by cace_calc
        if "symbols" in pars:
            numbers = symbols_to_numbers(pars["symbols"])
            if self.evaluator is None:
                pbc = _parse_pbc(pars["pbc"]) if "pbc" in pars else np.ones(3, bool)
                self.evaluator = IPIEvaluator(self.calculator, numbers, pbc)
            elif not np.array_equal(numbers, self.evaluator.numbers):
                raise ValueError("the elements in i-PI's <parameters> (symbols) differ from the "
                                 "template's: check that both list the atoms in the same order")
        if self.evaluator is None:
            raise ValueError("the driver does not know the elements: give it a template structure "
                             "(--template FILE, same atom order as i-PI's input), or add "
                             "<parameters>{symbols: OHH...}</parameters> to i-PI's <ffsocket>")
        return batch

    def _use_committee(self) -> None:
        """Send every readout head from now on (raises ``ValueError`` for a single head)."""
        self.calculator = committee_calculator(self.calculator)
        self.committee = True
        if self.evaluator is not None:
            self.evaluator = IPIEvaluator(self.calculator, self.evaluator.numbers, self.evaluator.pbc)

    def _posdata(self, conn: IPIConnection, batch: int):
        if batch == 1:
            h = conn.recv_array(np.float64, 9).reshape(3, 3)
            conn.recv_array(np.float64, 9)  # inverse cell, not needed
            nat = conn.recv_int()
            self._check_natoms(nat)
            cells, pos = [h], [conn.recv_array(np.float64, 3 * nat).reshape(nat, 3)]
        else:  # one atom count, then (h, ih) per structure, then all positions
            nat = conn.recv_int()
            self._check_natoms(nat)
            if nat * batch > MAX_ATOMS_PER_MESSAGE:
                raise DriverProtocolError(f"i-PI protocol error: POSDATA of {batch} structures of {nat} atoms "
                                          f"exceeds {MAX_ATOMS_PER_MESSAGE} atoms per message")
            hh = conn.recv_array(np.float64, 18 * batch).reshape(batch, 2, 3, 3)
            q = conn.recv_array(np.float64, 3 * nat * batch).reshape(batch, nat, 3)
            cells, pos = list(hh[:, 0]), list(q)
        if self.committee:
            results = self.evaluator.compute_committee(cells, pos)
            self._watch().observe(self.evaluator.forces_uncertainty,
                                  lambda: [self.evaluator.to_atoms(h, q) for h, q in zip(cells, pos)])
        else:
            results = [(*r, "") for r in self.evaluator.compute(cells, pos)]
        self.n_structures += len(results)
        return results

    def _watch(self) -> ForceUncertaintyWatch:
        if self.watch is None:
            self.watch = ForceUncertaintyWatch(self.evaluator.numbers,
                                               threshold=model_force_threshold(self.calculator.model),
                                               **self.watch_options)
        return self.watch

    def _check_natoms(self, nat: int) -> None:
        if nat != len(self.evaluator.numbers):
            raise DriverProtocolError(f"i-PI sent {nat} atoms but the driver expects "
                                      f"{len(self.evaluator.numbers)} (wrong template?)")

    @staticmethod
    def _forces_message(results, batch: int) -> list[bytes]:
        """FORCEREADY for ``(energy, forces, virial, extra)`` per structure (atomic units)."""
        nat = len(results[0][1])
        if batch == 1:
            energy, forces, virial, extra = results[0]
            return [header("FORCEREADY"), np.float64(energy).tobytes(), np.int32(nat).tobytes(),
                    forces.tobytes(), virial.T.tobytes(), *_extra_bytes(extra)]
        parts = [header("FORCEREADY"), np.array([r[0] for r in results], np.float64).tobytes(),
                 np.int32(nat).tobytes()]
        parts += [r[1].tobytes() for r in results]
        parts += [r[2].T.copy().tobytes() for r in results]
        for r in results:
            parts += _extra_bytes(r[3])
        return parts

    def _serve(self, conn: IPIConnection) -> None:
        initialised, results, batch = False, None, 1
        while True:
            msg = conn.recv_header()
            self.n_messages += 1
            if msg == "STATUS":
                state = "HAVEDATA" if results is not None else "READY" if initialised else "NEEDINIT"
                conn.send(header(state))
            elif msg == "INIT":
                batch = self._init(conn)
                initialised = True
            elif msg == "POSDATA":
                if not initialised:
                    raise DriverProtocolError("i-PI sent POSDATA before INIT")
                results = self._posdata(conn, batch)
            elif msg == "GETFORCE":
                if results is None:
                    raise DriverProtocolError("i-PI asked for forces before sending positions")
                conn.send(*self._forces_message(results, batch))
                results = None
            elif msg == "EXIT":
                return
            else:
                raise DriverProtocolError(f"unexpected message {msg!r} from the i-PI server")


def _say(message: str) -> None:
    print(f"cace-calc ipi: {message}", file=sys.stderr, flush=True)


def _extra_bytes(extra: str) -> list[bytes]:
    """An "extra" string as the protocol sends it: its length (int32), then its UTF-8 bytes."""
    data = extra.encode("utf-8")
    return [np.int32(len(data)).tobytes(), data]


def run_driver(model, *, unix: str | None = None, host: str | None = None, port: int | None = None,
               template=None, device: str = "auto", dtype: str = "float64", committee: bool = False,
               sockets_prefix: str = DEFAULT_SOCKETS_PREFIX, wait: float = 0.0,
               timeout: float | None = None, uncertainty_log=None, max_uncertainty: float | None = None) -> int:
    """Serve a running i-PI with a CACE model until it ends the run (see :class:`CACEDriver`
    and :meth:`CACEDriver.run`). Returns the number of structures evaluated."""
    driver = CACEDriver(model, template=template, device=device, dtype=dtype, committee=committee,
                        uncertainty_log=uncertainty_log, max_uncertainty=max_uncertainty)
    return driver.run(unix=unix, host=host, port=port, sockets_prefix=sockets_prefix, wait=wait,
                      timeout=timeout)
