"""Structure relaxation for the bulk analyses: cell and positions, or positions only."""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from .bulk import check_bulk, check_stress

__all__ = ["RelaxationWarning", "relax_cell", "relax_positions"]

_OPTIMIZERS = ("BFGS", "FIRE", "LBFGS")
_FILTERS = ("frechet", "exp")


class RelaxationWarning(UserWarning):
    """A relaxation stopped at its step limit before reaching ``fmax``."""


def _optimizer(name: str):
    from ase import optimize

    if name not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(_OPTIMIZERS)}, got {name!r}")
    return getattr(optimize, name)


def _check_settings(fmax: float, steps: int) -> None:
    if not fmax > 0:
        raise ValueError(f"fmax must be positive (eV/A), got {fmax}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")


def _run(obj, atoms: Atoms, fmax: float, steps: int, optimizer: str, logfile, what: str) -> None:
    opt = _optimizer(optimizer)(obj, logfile=logfile)
    converged = opt.run(fmax=fmax, steps=steps)
    if not converged:
        forces = np.linalg.norm(obj.get_forces(), axis=1).max()
        warnings.warn(f"{what} did not reach fmax={fmax} eV/A in {steps} steps (max force {forces:.2e}); "
                      "results computed from this structure may be inaccurate", RelaxationWarning, stacklevel=3)


def relax_cell(atoms: Atoms, calc: BaseCalculator, *, fmax: float = 1e-3, steps: int = 1000,
               optimizer: str = "BFGS", cell_filter: str = "frechet", keep_symmetry: bool = True,
               hydrostatic: bool = False, scalar_pressure: float = 0.0, logfile=None) -> Atoms:
    """Relax cell and positions of a periodic crystal; returns a relaxed copy with ``calc`` attached.

    ``fmax`` (eV/A) bounds the atomic forces and the filter's cell forces (stress times volume
    over the number of atoms). ``cell_filter`` is ``"frechet"`` (ASE's FrechetCellFilter) or
    ``"exp"`` (ExpCellFilter); ``optimizer`` BFGS, FIRE or LBFGS. ``keep_symmetry`` keeps the
    space group (ASE's FixSymmetry) during the relaxation; the returned atoms have no
    constraints. ``scalar_pressure`` is in eV/A^3 (``value * ase.units.GPa``).
    Raises :class:`~cace_calc.errors.InvalidAtomsError` for non-periodic input and
    :class:`~cace_calc.errors.StressNotAvailableError` for a calculator without stress; warns
    with :class:`RelaxationWarning` when the step limit is reached.
    """
    from ase.filters import ExpCellFilter, FrechetCellFilter

    check_bulk(atoms)
    _check_settings(fmax, steps)
    if cell_filter not in _FILTERS:
        raise ValueError(f"cell_filter must be one of {', '.join(_FILTERS)}, got {cell_filter!r}")
    _optimizer(optimizer)
    check_stress(atoms, calc)
    work = atoms.copy()
    work.calc = calc
    if keep_symmetry:
        from ase.constraints import FixSymmetry

        work.set_constraint(FixSymmetry(work))
    filt = (FrechetCellFilter if cell_filter == "frechet" else ExpCellFilter)(
        work, hydrostatic_strain=hydrostatic, scalar_pressure=scalar_pressure)
    _run(filt, work, fmax, steps, optimizer, logfile, "the cell relaxation")
    work.set_constraint()
    return work


def relax_positions(atoms: Atoms, calc: BaseCalculator, *, fmax: float = 1e-3, steps: int = 1000,
                    optimizer: str = "BFGS", logfile=None) -> Atoms:
    """Relax the atomic positions at fixed cell to max force ``fmax`` (eV/A); returns a relaxed
    copy with ``calc`` attached (constraints of ``atoms`` are kept)."""
    _check_settings(fmax, steps)
    work = atoms.copy()
    work.calc = calc
    _run(work, work, fmax, steps, optimizer, logfile, "the position relaxation")
    return work
