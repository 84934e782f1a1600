"""Point defects of bcc metals: vacancy and self-interstitial formation energies.

A cubic supercell of ``repeat``^3 conventional cells at the calculator's own lattice constant
(cubic cell relaxed first); one atom removed (vacancy) or one added (self-interstitial
atom, SIA: dumbbells along <111>, <110>, <100>, octahedral and tetrahedral sites); positions
relaxed at fixed cell (constant volume, the usual protocol of DFT defect studies). Formation
energy E_f = E(defect cell, N +- 1 atoms) - (N +- 1)/N E(perfect cell, N atoms), in eV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import find_mic

from .bulk import CalcOrModel, resolve_calculator
from .relax import relax_cell, relax_positions

__all__ = ["DEFECT_KINDS", "DefectResult", "bcc_defect_cell", "point_defects"]

DEFECT_KINDS = ("vacancy", "111", "110", "100", "octahedral", "tetrahedral")
_DUMBBELL = {"111": (1, 1, 1), "110": (1, 1, 0), "100": (1, 0, 0)}
_HALF_SPLIT = 1 / 3  # half the dumbbell's separation, in nearest-neighbour distances (a <111>
# dumbbell then sits 2/3 of one from its partner and from the next atom of its chain; relaxation opens both)


@dataclass
class DefectResult:
    """One relaxed point defect: ``formation_energy`` (eV), the relaxed ``structure`` (with its
    energy and forces) and the largest displacement from the unrelaxed defect cell (A)."""

    kind: str
    formation_energy: float
    n_atoms: int
    max_displacement: float
    structure: Atoms


def bcc_defect_cell(element: str, a: float, kind: str, repeat: int = 4) -> Atoms:
    """An unrelaxed cubic bcc supercell of ``element`` (lattice constant ``a`` in A, ``repeat``^3
    conventional cells) holding one defect of ``kind`` (one of :data:`DEFECT_KINDS`) at its centre."""
    if kind not in DEFECT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DEFECT_KINDS)}, got {kind!r}")
    if repeat < 2:
        raise ValueError(f"repeat must be at least 2 (a 16-atom cell), got {repeat}")
    atoms = bulk(element, "bcc", a=a, cubic=True).repeat(repeat)
    centre = np.full(3, a * (repeat // 2))  # a lattice site (corner of a conventional cell)
    site = int(np.argmin(np.linalg.norm(atoms.positions - centre, axis=1)))
    if kind == "vacancy":
        del atoms[site]
        return atoms
    if kind in _DUMBBELL:
        u = np.array(_DUMBBELL[kind], float)
        shift = _HALF_SPLIT * a * np.sqrt(3) / 2 * u / np.linalg.norm(u)
        origin = atoms.positions[site].copy()
        atoms.positions[site] = origin + shift
        atoms += Atoms(element, positions=[origin - shift])
        return atoms
    offset = (0.5, 0.5, 0.0) if kind == "octahedral" else (0.5, 0.25, 0.0)
    atoms += Atoms(element, positions=[atoms.positions[site] + a * np.array(offset)])
    return atoms


def point_defects(calc_or_model: CalcOrModel, element: str, kinds: Sequence[str] = DEFECT_KINDS, *,
                  repeat: int = 4, fmax: float = 0.01, steps: int = 2000, a: float | None = None,
                  device: str = "auto", dtype: str = "float64") -> dict[str, DefectResult]:
    """Relaxed formation energies (eV) of point defects of bcc ``element``, one per kind.

    ``a`` (A): the lattice constant; by default the calculator's own (conventional cubic cell
    relaxed to 1e-4 eV/A). ``fmax`` (eV/A) and ``steps`` bound each position relaxation (BFGS).
    ``calc_or_model``: an ASE calculator, a model name or file, or a :class:`~cace_calc.CACE`.
    """
    calc = resolve_calculator(calc_or_model, device=device, dtype=dtype)
    for kind in kinds:
        if kind not in DEFECT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(DEFECT_KINDS)}, got {kind!r}")
    if a is None:
        cell = relax_cell(bulk(element, "bcc", a=_guess_a(element), cubic=True), calc, fmax=1e-4)
        a = float(cell.cell.lengths()[0])
    perfect = bulk(element, "bcc", a=a, cubic=True).repeat(repeat)
    perfect.calc = calc
    e_per_atom = perfect.get_potential_energy() / len(perfect)
    out = {}
    for kind in kinds:
        start = bcc_defect_cell(element, a, kind, repeat)
        relaxed = relax_positions(start, calc, fmax=fmax, steps=steps)
        moved = relaxed.positions - start.positions
        energy = relaxed.get_potential_energy()
        # its own energy and forces, not the shared calculator's (which moves on to the next cell)
        relaxed.calc = SinglePointCalculator(relaxed, energy=energy, forces=relaxed.get_forces())
        out[kind] = DefectResult(
            kind=kind, n_atoms=len(relaxed), formation_energy=float(energy - len(relaxed) * e_per_atom),
            max_displacement=float(find_mic(moved, relaxed.cell, relaxed.pbc)[1].max()),
            structure=relaxed)
    return out


def _guess_a(element: str) -> float:
    """A starting bcc lattice constant (A): ASE's reference where bcc, else from the atomic volume."""
    from ase.data import atomic_numbers, reference_states

    ref = reference_states[atomic_numbers[element]] or {}
    if ref.get("symmetry") == "bcc":
        return float(ref["a"])
    raise ValueError(f"{element} is not bcc in ASE's reference states; pass its lattice constant a=")
