"""Evaluate structures in i-PI's units and conventions with a :class:`CACECalculator`.

i-PI works in atomic units: positions and cells in Bohr, energies in Hartree, forces in
Hartree/Bohr. Its cell matrix ``h`` holds the lattice vectors as columns (ASE: rows), and
the virial it expects is ``-dE/d(strain)`` in Hartree, which is ``-volume * stress`` in ASE's
sign convention (ASE stress is positive when tensile). This module is the only place where
cace_calc converts between ASE and i-PI units; it uses ASE's constants both ways.

For i-PI's ``<ffcommittee>`` with ``<parse_json>``, :meth:`IPIEvaluator.compute_committee`
adds every readout head's (member's) energy, forces and virial to the reply as a JSON "extra"
string, in the same atomic units and layout as the binary reply.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

import numpy as np
from ase import Atoms, units
from ase.stress import voigt_6_to_full_3x3_stress

from ..calculator import CACECalculator
from ..graph import species_indices
from ..model import CACE

#: positions, cells: Bohr -> Angstrom; energies: eV -> Hartree; forces: eV/A -> Hartree/Bohr
BOHR = units.Bohr
HARTREE = units.Hartree


def model_label(model) -> str:
    """How errors name ``model``: a name or path as given, else the model's metadata name."""
    if isinstance(model, CACECalculator):
        model = model.model
    if isinstance(model, CACE):
        return (getattr(model, "metadata", {}) or {}).get("name", "given")
    return str(model)


def require_committee(model: CACE, label: str) -> None:
    """Raise a one-line ``ValueError`` naming the model when it has no members (one head)."""
    if model.n_heads < 2:
        raise ValueError(f"model {label!r} has a single readout head, so no committee members for "
                         "i-PI's <ffcommittee> (uncertainty): use a model trained with n_heads > 1")


def committee_calculator(model, *, device: str = "auto", dtype: str = "float64") -> CACECalculator:
    """A calculator giving every readout head's results (``uncertainty="members"``), as
    :meth:`IPIEvaluator.compute_committee` needs. ``model``: as for :class:`CACECalculator`,
    or a calculator (its model, device and dtype are kept). Raises ``ValueError`` naming the
    model when it has a single readout head."""
    label = model_label(model)
    calc = model if isinstance(model, CACECalculator) else CACECalculator(model, device=device, dtype=dtype)
    if calc.uncertainty == "members":
        return calc
    require_committee(calc.model, label)
    return CACECalculator(calc.model, device=calc.device, dtype=calc.dtype, uncertainty="members")


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
        self.forces_uncertainty: list[np.ndarray] = []  # of the last committee call, eV/A per atom
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
        return [result[:3] for result in self._evaluate(cells, positions, committee=False)]

    def compute_committee(self, cells: Sequence[np.ndarray], positions: Sequence[np.ndarray]
                          ) -> list[tuple[float, np.ndarray, np.ndarray, str]]:
        """As :meth:`compute`, plus the JSON extra string that i-PI's ``<ffcommittee>`` with
        ``<parse_json>`` unpacks: ``committee_pot`` (K energies, Hartree), ``committee_force``
        (K lists of 3 * n_atoms forces, Hartree/Bohr, atom by atom) and ``committee_virial``
        (K lists of 9, Hartree, in the order of the binary reply), one per readout head.
        The mean energy, forces and virial are the members' means. Needs a calculator with
        ``uncertainty="members"``. Afterwards :attr:`forces_uncertainty` holds each structure's
        calibrated per-atom force sigma (eV/A, (n_atoms,)).
        """
        if self.calculator.uncertainty != "members":
            raise ValueError("committee results need a CACECalculator with uncertainty='members'")
        return self._evaluate(cells, positions, committee=True)

    def _evaluate(self, cells, positions, committee: bool) -> list[tuple]:
        if len(cells) != len(positions):
            raise ValueError(f"got {len(cells)} cells but {len(positions)} position arrays")
        images = [self.to_atoms(h, q) for h, q in zip(cells, positions)]
        out = []
        batch = self.calculator.calculate_batch(images)
        if committee:  # alpha * members' spread: the calculator's forces_uncertainty
            self.forces_uncertainty = [res["forces_uncertainty"] for res in batch]
        for atoms, res in zip(images, batch):
            forces = res["forces"]
            virial = self._virial(atoms, forces, res.get("stress"))
            extra = self._committee_json(atoms, res) if committee else ""
            out.append((float(res["energy"]) / HARTREE,
                        np.ascontiguousarray(forces * (BOHR / HARTREE), dtype=np.float64),
                        np.ascontiguousarray(virial / HARTREE, dtype=np.float64), extra))
        return out

    def _committee_json(self, atoms: Atoms, res: dict) -> str:
        """The members of one structure as i-PI's committee JSON (atomic units)."""
        k = len(res["energy_members"])
        stresses = res["stress_members"] if self.pbc.all() else [None] * k
        virials = [self._virial(atoms, f, s) for f, s in zip(res["forces_members"], stresses)]
        return json.dumps({
            "committee_pot": (np.asarray(res["energy_members"]) / HARTREE).tolist(),
            "committee_force": (res["forces_members"] * (BOHR / HARTREE)).reshape(k, -1).tolist(),
            # transposed, row by row: the byte order of the virial in the binary reply
            "committee_virial": [(v.T / HARTREE).reshape(-1).tolist() for v in virials]})

    def _virial(self, atoms: Atoms, forces: np.ndarray, stress: np.ndarray | None) -> np.ndarray:
        """The 3x3 virial ``-dE/d(strain)`` in eV from forces (eV/A, (n_atoms, 3)) and, for
        fully periodic cells, the stress (eV/A^3, Voigt, ASE sign)."""
        if self.pbc.all():
            return -atoms.get_volume() * voigt_6_to_full_3x3_stress(stress)
        if not self.pbc.any():
            virial = atoms.positions.T @ forces  # sum_i r_i (x) F_i, eV
            return 0.5 * (virial + virial.T)
        return np.zeros((3, 3))
