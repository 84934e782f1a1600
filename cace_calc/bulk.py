"""Shared plumbing of the bulk-crystal analyses (phonons, elastic constants, equation of state).

Turns a model name into a calculator, checks that a structure is a 3D-periodic crystal and that
a calculator gives stress, evaluates many structures (one batched call for a
:class:`~cace_calc.CACECalculator`, one by one for any other ASE calculator) and reads a
structure from a file or a shorthand such as ``bcc:W:3.17``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.calculators.calculator import (
    PropertyNotImplementedError as _AsePropertyNotImplemented,
)

from .calculator import CACECalculator
from .errors import InvalidAtomsError, StressNotAvailableError
from .model import CACE

CalcOrModel = BaseCalculator | str | os.PathLike | CACE

SHORTHAND_STRUCTURES = ("sc", "fcc", "bcc", "hcp", "diamond")
_SHORTHAND = re.compile(r"^(?P<kind>[a-z]+):(?P<symbol>[A-Z][a-z]?)(?::(?P<a>[0-9.]+))?$")


def resolve_calculator(calc_or_model: CalcOrModel, *, device: str = "auto",
                       dtype: str = "float64") -> BaseCalculator:
    """An ASE calculator as is; a model name, model file or :class:`~cace_calc.CACE` becomes a
    :class:`~cace_calc.CACECalculator` on ``device`` in ``dtype``."""
    if isinstance(calc_or_model, BaseCalculator):
        return calc_or_model
    if isinstance(calc_or_model, (str, os.PathLike, CACE)):
        return CACECalculator(calc_or_model, device=device, dtype=dtype)
    raise TypeError("expected an ASE calculator, a model name, a model file path or a cace_calc.CACE, "
                    f"got {type(calc_or_model).__name__}")


def check_bulk(atoms: Atoms) -> None:
    """Raise :class:`~cace_calc.errors.InvalidAtomsError` unless ``atoms`` is a non-empty crystal
    periodic in all three directions with a non-degenerate cell."""
    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise InvalidAtomsError("the structure has no atoms")
    if not atoms.pbc.all():
        raise InvalidAtomsError("phonons, elastic constants and equations of state need a crystal "
                                f"periodic in all three directions; this structure has pbc={atoms.pbc.tolist()}")
    if atoms.cell.rank < 3 or abs(atoms.cell.volume) < 1e-6:
        raise InvalidAtomsError(f"the cell is degenerate (volume {atoms.cell.volume:.3g} A^3)")


def check_stress(atoms: Atoms, calc: BaseCalculator) -> np.ndarray:
    """The stress of ``atoms`` (eV/A^3, Voigt) from ``calc``; raises
    :class:`~cace_calc.errors.StressNotAvailableError` when the calculator gives none."""
    implemented = getattr(calc, "implemented_properties", None)
    if implemented is not None and "stress" not in implemented:
        raise StressNotAvailableError(f"the calculator {type(calc).__name__} does not compute stress "
                                      f"(it gives {', '.join(implemented)})")
    probe = atoms.copy()
    probe.calc = calc
    try:
        return np.asarray(probe.get_stress(voigt=True), dtype=float)
    except (_AsePropertyNotImplemented, NotImplementedError) as e:
        raise StressNotAvailableError(f"the calculator {type(calc).__name__} does not compute stress: {e}") from e


def evaluate_many(images: Sequence[Atoms], calc: BaseCalculator, properties: Sequence[str] = ("forces",),
                  *, batch: bool = True, max_atoms: int = 20000,
                  progress: Callable[[str], None] | None = None) -> list[dict[str, np.ndarray]]:
    """Evaluate ``properties`` (``energy`` eV, ``forces`` eV/A, ``stress`` eV/A^3 Voigt) of many
    structures: one batched call for a :class:`~cace_calc.CACECalculator` (``batch=True``),
    else one structure at a time. The images are not modified."""
    images = list(images)
    if batch and isinstance(calc, CACECalculator):
        if progress:
            progress(f"evaluating {len(images)} structures ({sum(len(a) for a in images)} atoms) in batches")
        results = calc.calculate_batch(images, max_atoms=max_atoms)
        missing = [p for p in properties if p not in results[0]] if results else []
        if missing:
            raise StressNotAvailableError(f"the calculator gave no {', '.join(missing)}")
        return [{p: np.asarray(r[p]) for p in properties} for r in results]
    results = []
    for k, image in enumerate(images):
        if progress and (k % max(1, len(images) // 10) == 0 or k == len(images) - 1):
            progress(f"evaluating structure {k + 1}/{len(images)}")
        at = image.copy()
        at.calc = calc
        res = {}
        for p in properties:
            if p == "energy":
                res[p] = np.asarray(at.get_potential_energy())
            elif p == "forces":
                res[p] = np.asarray(at.get_forces())
            elif p == "stress":
                res[p] = np.asarray(at.get_stress(voigt=True))
            else:
                raise ValueError(f"unknown property {p!r}; use energy, forces or stress")
        results.append(res)
    return results


def lattice_summary(atoms: Atoms, eps: float = 1e-3) -> str:
    """The Bravais lattice of ``atoms.cell`` with its conventional constants (A, degrees), then
    the cell lengths, e.g. ``body-centred cubic, a = 3.1900 A (cell lengths 2.7626, 2.7626,
    2.7626 A)`` for the primitive cell of bcc W: a user expects the lattice constant, not the
    primitive cell's edge. ``eps``: tolerance (A) of ASE's lattice recognition."""
    lengths = ", ".join(f"{v:.4f}" for v in atoms.cell.lengths())
    try:
        lat = atoms.cell.get_bravais_lattice(eps=eps)
    except (RuntimeError, ValueError):  # ASE could not classify the cell
        return f"cell lengths {lengths} A"
    consts = ", ".join(f"{k} = {v:.4f} A" if k in "abc" else f"{k} = {v:.2f} deg" for k, v in lat.vars().items())
    return f"{lat.longname}, {consts} (cell lengths {lengths} A)"


def read_structure(spec: str | os.PathLike) -> Atoms:
    """A structure from a file ``ase.io.read`` understands (its last frame), a structure shipped
    with the package by name (``cace_calc.data.list_structures()``, e.g. ``nbmotaw-128``) or a shorthand
    ``KIND:SYMBOL[:A]`` with KIND one of sc, fcc, bcc, hcp, diamond and A the lattice constant
    in A (ASE's reference value if left out), e.g. ``bcc:W:3.17``; shorthands give the primitive cell."""
    from .data import list_structures, resolve_structure_file

    path = os.fspath(spec)
    if os.path.exists(path) or path in list_structures():
        import ase.io

        atoms = ase.io.read(resolve_structure_file(path))
        if isinstance(atoms, list):  # pragma: no cover - ase.io.read returns one Atoms by default
            atoms = atoms[-1]
        return atoms
    m = _SHORTHAND.match(path)
    if m is None or m["kind"] not in SHORTHAND_STRUCTURES:
        raise ValueError(f"{path!r} is neither a file, a shipped structure ({', '.join(list_structures())}) nor a "
                         f"structure shorthand KIND:SYMBOL[:A] with KIND in {', '.join(SHORTHAND_STRUCTURES)} "
                         "(e.g. bcc:W:3.17)")
    from ase.build import bulk
    from ase.data import atomic_numbers

    if m["symbol"] not in atomic_numbers:
        raise ValueError(f"cannot build {path!r}: {m['symbol']!r} is not a chemical element symbol")
    try:
        a = float(m["a"]) if m["a"] else None
        if a is not None and not a > 0:
            raise ValueError(f"the lattice constant must be positive, got {m['a']}")
        return bulk(m["symbol"], m["kind"], a=a)
    except (KeyError, ValueError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        if not m["a"]:
            reason += f" (give the lattice constant: {m['kind']}:{m['symbol']}:A)"
        raise ValueError(f"cannot build {path!r}: {reason}") from e
