"""Evaluate structures in i-PI's units and conventions with a :class:`CACECalculator`.

i-PI works in atomic units: positions and cells in Bohr, energies in Hartree, forces in
Hartree/Bohr. Its cell matrix ``h`` holds the lattice vectors as columns (ASE: rows), and
the virial it expects is ``-dE/d(strain)`` in Hartree, which is ``-volume * stress`` in ASE's
sign convention (ASE stress is positive when tensile). This module is the only place where
cace_calc converts between ASE and i-PI units; it uses ASE's constants both ways.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from ase import Atoms, units
from ase.stress import voigt_6_to_full_3x3_stress

from ..calculator import CACECalculator
from ..graph import species_indices

#: positions, cells: Bohr -> Angstrom; energies: eV -> Hartree; forces: eV/A -> Hartree/Bohr
BOHR = units.Bohr
HARTREE = units.Hartree


class IPIEvaluator:
    """Computes i-PI force-field results for structures of one fixed composition.

    Parameters
    ----------
    calculator: the :class:`CACECalculator` that evaluates the structures.
    numbers: atomic numbers, in i-PI's atom order, (n_atoms,).
    pbc: periodicity of the three cell directions (ASE meaning). For fully periodic
        structures the virial is ``-V * stress``; for non-periodic ones (a molecule in
        i-PI's box) it is ``sum_i r_i (x) F_i``, which is the same derivative for an
        isolated system; for partly periodic cells no stress is available and the virial
        sent is zero (pressure outputs of i-PI are then meaningless).

    Raises :class:`cace_calc.errors.UnsupportedElementError` at construction when the
    model does not know an element.
    """

    def __init__(self, calculator: CACECalculator, numbers: Sequence[int], pbc=(True, True, True)):
        numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        if len(numbers) == 0:
            raise ValueError("numbers is empty: i-PI needs at least one atom")
        species_indices(numbers, calculator.model.config.elements)  # raises for unknown elements
        self.calculator = calculator
        self.numbers = numbers
        self.pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        if self.pbc.any() and not self.pbc.all():
            warnings.warn(f"pbc={self.pbc.tolist()}: the model gives no stress for partly periodic cells, "
                          "so the virial sent to i-PI is zero and its pressure outputs are meaningless",
                          RuntimeWarning, stacklevel=2)

    @classmethod
    def from_atoms(cls, calculator: CACECalculator, atoms: Atoms) -> IPIEvaluator:
        """An evaluator for the composition and periodicity of ``atoms``."""
        return cls(calculator, atoms.numbers, atoms.pbc)

    def to_atoms(self, cell_h: np.ndarray, positions: np.ndarray) -> Atoms:
        """ASE Atoms (Angstrom, cell as rows) from i-PI's ``h`` (Bohr, vectors as columns) and
        positions (Bohr, (n_atoms, 3) or flat)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        if len(positions) != len(self.numbers):
            raise ValueError(f"i-PI sent {len(positions)} atoms but the structure template has "
                             f"{len(self.numbers)}; the template must list the atoms of i-PI's input "
                             "in the same order")
        cell = np.asarray(cell_h, dtype=np.float64).reshape(3, 3).T * BOHR
        return Atoms(numbers=self.numbers, positions=positions * BOHR, cell=cell, pbc=self.pbc)

    def compute(self, cells: Sequence[np.ndarray], positions: Sequence[np.ndarray]
                ) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """Evaluate several structures in one batched model call.

        ``cells``: i-PI ``h`` matrices (Bohr); ``positions``: (n_atoms, 3) arrays (Bohr).
        Returns one ``(energy, forces, virial)`` per structure: Hartree, Hartree/Bohr as
        (n_atoms, 3) float64, and the 3x3 virial ``-dE/d(strain)`` in Hartree.
        """
        if len(cells) != len(positions):
            raise ValueError(f"got {len(cells)} cells but {len(positions)} position arrays")
        images = [self.to_atoms(h, q) for h, q in zip(cells, positions)]
        out = []
        for atoms, res in zip(images, self.calculator.calculate_batch(images)):
            forces = res["forces"]
            if self.pbc.all():
                virial = -atoms.get_volume() * voigt_6_to_full_3x3_stress(res["stress"])
            elif not self.pbc.any():
                virial = atoms.positions.T @ forces  # sum_i r_i (x) F_i, eV
                virial = 0.5 * (virial + virial.T)
            else:
                virial = np.zeros((3, 3))
            out.append((float(res["energy"]) / HARTREE,
                        np.ascontiguousarray(forces * (BOHR / HARTREE), dtype=np.float64),
                        np.ascontiguousarray(virial / HARTREE, dtype=np.float64)))
        return out
