"""Watch the force uncertainty a committee driver computes for i-PI, call by call.

In committee mode (:meth:`cace_calc.ipi.bridge.IPIEvaluator.compute_committee`) every structure
comes with the calibrated one-sigma force uncertainty of each atom (eV/A): ``alpha`` times the
square root of the mean over x, y, z of the members' population variance of the atom's force,
``alpha = model.uncertainty_scale[2]`` (the ``forces_uncertainty`` of
``CACECalculator(model, uncertainty="members")``). :class:`ForceUncertaintyWatch` keeps the
largest, writes one line per call of i-PI, says once when it passes the model's threshold and,
past ``stop_above``, creates the file that makes i-PI stop softly.

A call is one POSDATA message, numbered from 0 (i-PI's first call, on the start structure). A
driver handed all beads in one message (``cace-calc pimd`` with one driver) gets one call per
i-PI step, so call N is normally step N; i-PI may split a step's beads over two messages when it
queues them slower than it dispatches, and then the numbers drift apart. i-PI sends no step.

The log (``uncertainty.log`` of ``cace-calc pimd``)::

    # cace-calc ipi: largest calibrated force uncertainty (one sigma, eV/A) of each call
    # threshold_ev_per_a 0.3
    # call structure sigma_ev_per_a atom symbol
    0 1 1.2345678901e-01 4 O
    # warning: call 5 (structure 0): force uncertainty ...

``structure`` is the index in the call's message (the bead when the message holds every bead).
Lines starting with ``# warning:`` and ``# stop:`` are the events; :func:`read_uncertainty_log`
reads it all back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from .launch import read_new_lines

EXIT_FILE = "EXIT"  # i-PI ends the run softly, after the current step, when this file appears in its folder
STOP_FRAMES = "uncertain.extxyz"  # the structures of the call that stopped the run, beside EXIT_FILE
COLUMNS = "call structure sigma_ev_per_a atom symbol"


def model_force_threshold(model) -> float | None:
    """The model's per-atom force sigma threshold (eV/A; metadata
    ``uncertainty.forces_threshold_ev_per_a``, set for the cheap ``uncertainty=True`` estimate),
    or ``None`` when it has none."""
    metadata = getattr(model, "metadata", {}) or {}
    value = (metadata.get("uncertainty") or {}).get("forces_threshold_ev_per_a")
    return None if value is None else float(value)


class ForceUncertaintyWatch:
    """Keeps the largest per-atom force sigma (eV/A) of every call, with its call, structure and
    atom; logs one line per call; warns once past ``threshold``; past ``stop_above`` writes
    ``exit_file`` (once) so that i-PI stops after the current step, and the structures of that
    call, with their ``forces_uncertainty`` (eV/A per atom), to ``uncertain.extxyz`` beside it.

    numbers: atomic numbers in i-PI's order. threshold, stop_above: eV/A or ``None``.
    log_path: the log file (``None``: no log). say: where messages go (one line each).
    """

    def __init__(self, numbers: Sequence[int], *, threshold: float | None = None,
                 stop_above: float | None = None, log_path: str | os.PathLike | None = None,
                 exit_file: str | os.PathLike = EXIT_FILE, say: Callable[[str], None] = print):
        self.symbols = [chemical_symbols[int(z)] for z in numbers]
        self.threshold, self.stop_above, self.say = threshold, stop_above, say
        self.exit_file = Path(exit_file)
        self.calls = 0
        self.largest = 0.0
        self.where: tuple[int, int, int] | None = None  # call, structure, atom of the largest
        self.warned = self.stopped = False
        self.log = None if log_path is None else open(log_path, "w", buffering=1)  # noqa: SIM115 (close())
        if self.log is not None:
            limit = "none" if threshold is None else repr(float(threshold))
            self.log.write("# cace-calc ipi: largest calibrated force uncertainty (one sigma, eV/A) of each call\n"
                           f"# threshold_ev_per_a {limit}\n# {COLUMNS}\n")

    def observe(self, sigmas: Sequence[np.ndarray], frames: Callable[[], list] | None = None) -> None:
        """One call of i-PI: ``sigmas`` holds the per-atom force sigma (eV/A, (n_atoms,)) of each
        structure of the message; ``frames()`` gives them as ASE Atoms (called only for a stop)."""
        call = self.calls
        self.calls += 1
        values = [float(np.max(s)) for s in sigmas]
        structure = int(np.argmax(values))
        atom = int(np.argmax(sigmas[structure]))
        value = values[structure]
        if self.log is not None:
            self.log.write(f"{call} {structure} {value:.10e} {atom} {self.symbols[atom]}\n")
        if value > self.largest or self.where is None:
            self.largest, self.where = value, (call, structure, atom)
        where = (f"call {call} (structure {structure}): force uncertainty {value:.3f} eV/A on atom {atom} "
                 f"({self.symbols[atom]})")
        if self.threshold is not None and value > self.threshold and not self.warned:
            self.warned = True
            self._event("warning", f"{where} passed the model's threshold {self.threshold:.3f} eV/A: the model "
                                   "is outside its training data here")
        if self.stop_above is not None and value > self.stop_above and not self.stopped:
            self.stopped = True
            if frames is not None:
                self._write_frames(frames(), sigmas, call)
            self.exit_file.touch()
            self._event("stop", f"{where} passed --max-uncertainty {self.stop_above:g} eV/A: asked i-PI to "
                                f"stop after this step ({self.exit_file.name} written)")

    def _write_frames(self, frames: list, sigmas: Sequence[np.ndarray], call: int) -> None:
        from ase.io import write

        for k, (atoms, sigma) in enumerate(zip(frames, sigmas)):
            atoms.arrays["forces_uncertainty"] = np.asarray(sigma, dtype=float)
            atoms.info.update(call=call, structure=k)
        write(self.exit_file.with_name(STOP_FRAMES), frames, format="extxyz")

    def _event(self, kind: str, message: str) -> None:
        if self.log is not None:
            self.log.write(f"# {kind}: {message}\n")
        self.say(message)

    def summary(self) -> str:
        """One line: the largest sigma of the run, its atom and call."""
        if self.where is None:
            return "no force uncertainty computed"
        call, structure, atom = self.where
        return (f"largest force uncertainty {self.largest:.4f} eV/A on atom {atom} ({self.symbols[atom]}) "
                f"at call {call} (structure {structure})")

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


@dataclass
class UncertaintyLog:
    """What :func:`read_uncertainty_log` reads from one or more driver logs.

    largest: the largest per-atom force sigma of the run, eV/A; atom, symbol: its atom (index in
    i-PI's order, element); call, structure: the driver call and the index in its message;
    log: the file it is in. calls: the calls logged (all logs). threshold: the model's, eV/A,
    or ``None``. warnings, stops: the event lines, in order. sigma: (calls,) the largest of
    each call of the first log, eV/A.
    """

    largest: float
    atom: int
    symbol: str
    call: int
    structure: int
    log: Path
    calls: int
    threshold: float | None
    warnings: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    sigma: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def passed_threshold(self) -> bool:
        return bool(self.warnings)

    @property
    def stopped(self) -> bool:
        return bool(self.stops)


def _read_one(path: Path):
    threshold, events, rows = None, {"warning": [], "stop": []}, []
    for line in path.read_text().splitlines():
        if line.startswith("# threshold_ev_per_a "):
            value = line.split()[-1]
            threshold = None if value == "none" else float(value)
        elif line.startswith(("# warning: ", "# stop: ")):
            kind, _, message = line[2:].partition(": ")
            events[kind].append(message)
        elif line.strip() and not line.startswith("#"):
            parts = line.split()
            if len(parts) == 5:  # a partly written last line is skipped
                rows.append((int(parts[0]), int(parts[1]), float(parts[2]), int(parts[3]), parts[4]))
    return threshold, events, rows


def read_uncertainty_log(paths: Sequence[str | os.PathLike]) -> UncertaintyLog | None:
    """Read the logs written by :class:`ForceUncertaintyWatch` (one per driver); ``None`` when
    none of them holds a call."""
    best, total, threshold, sigma = None, 0, None, None
    warnings, stops = [], []
    for path in map(Path, paths):
        limit, events, rows = _read_one(path)
        threshold = limit if limit is not None else threshold
        warnings += events["warning"]
        stops += events["stop"]
        total += len(rows)
        if sigma is None:
            sigma = np.array([r[2] for r in rows])
        for row in rows:
            if best is None or row[2] > best[0][2]:
                best = (row, path)
    if best is None:
        return None
    (call, structure, value, atom, symbol), path = best
    return UncertaintyLog(largest=value, atom=atom, symbol=symbol, call=call, structure=structure, log=path,
                          calls=total, threshold=threshold, warnings=warnings, stops=stops, sigma=sigma)


class EventFollower:
    """Follows watch logs while they are written and hands each new event line (``# warning:``,
    ``# stop:``) to ``say``, without the ``# `` (call :meth:`poll` now and then)."""

    def __init__(self, paths: Sequence[str | os.PathLike], say: Callable[[str], None]):
        self.offsets = {Path(p): 0 for p in paths}
        self.say = say

    def poll(self) -> None:
        for path, offset in self.offsets.items():
            lines, self.offsets[path] = read_new_lines(path, offset)
            for line in lines:
                if line.startswith(("# warning: ", "# stop: ")):
                    self.say(line[2:])
