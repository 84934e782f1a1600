"""Read the outputs of a run written by :mod:`cace_calc.ipi.inputs` into ASE units."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read

from .bridge import BOHR, HARTREE
from .inputs import OUTPUT_PREFIX

_COLUMN = re.compile(r"#\s*(?:column|cols\.)\s+(\d+)(?:\s*-\s*(\d+))?\s+-->\s+(\S+)")
_PRESSURE_AU = HARTREE / BOHR**3  # eV/A^3 per atomic unit of pressure


def read_properties(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """i-PI's properties file as ``{name: array}``: one value per row of output, or
    (n_rows, k) for multi-column properties. Names as in the file header (with units)."""
    path = Path(path)
    columns: dict[str, slice] = {}
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                m = _COLUMN.match(line)
                if m:
                    start = int(m.group(1)) - 1
                    stop = int(m.group(2)) if m.group(2) else start + 1
                    columns[m.group(3)] = slice(start, stop)
            elif line.strip():
                rows.append(line.split())
    if not columns:
        raise ValueError(f"{path} has no i-PI column header")
    width = max(s.stop for s in columns.values())
    rows = [r for r in rows if len(r) == width]  # a partly written last line is skipped
    data = np.array(rows, dtype=float).reshape(len(rows), width)
    return {name: data[:, s] if s.stop - s.start > 1 else data[:, s.start] for name, s in columns.items()}


@dataclass
class PIMDResults:
    """Results of an i-PI run, in ASE units (eV, A, K, GPa, ps), one entry per output step.

    potential_energy: bead-averaged potential energy, eV. bead_potential_energies: (n, beads), eV.
    kinetic_energy_cv: centroid-virial quantum kinetic energy of the whole system, eV.
    kinetic_energy_per_atom: ``{symbol: (n,)}``, centroid-virial kinetic energy per atom of
        that element, eV (3/2 kT classically).
    temperature: K (from the MD kinetic energy of the ring polymer).
    pressure: centroid-virial pressure estimator, GPa. volume: A^3.
    virial_stress: (n, 3, 3) i-PI's ``virial_cv``, the virial part of the pressure tensor
        averaged over beads, eV/A^3; for one bead it equals ``-atoms.get_stress()`` (ASE sign).
    conserved: the conserved quantity of the integrator, eV.
    """

    directory: Path
    step: np.ndarray
    time_ps: np.ndarray
    potential_energy: np.ndarray
    bead_potential_energies: np.ndarray
    kinetic_energy_cv: np.ndarray
    kinetic_energy_per_atom: dict[str, np.ndarray]
    temperature: np.ndarray
    pressure: np.ndarray
    volume: np.ndarray
    virial_stress: np.ndarray
    conserved: np.ndarray
    pbc: np.ndarray = field(default_factory=lambda: np.ones(3, bool))

    @property
    def n_beads(self) -> int:
        return self.bead_potential_energies.shape[1]

    def bead_trajectory_files(self) -> list[Path]:
        """Per-bead position trajectories (extended XYZ, Angstrom), bead 0 first."""
        files = self.directory.glob(f"{OUTPUT_PREFIX}.pos_*.extxyz")
        return sorted(files, key=lambda p: int(p.name.split("_")[-1].split(".")[0]))

    def read_trajectory(self, bead: int | None = None) -> list[Atoms]:
        """The centroid trajectory (``bead=None``) or that of one bead, as ASE Atoms in Angstrom
        with the cell of each frame. Bead frames carry that bead's forces (eV/A, from
        ``atoms.get_forces()``) when the run wrote them (``write_forces``)."""
        if bead is None:
            frames = read(self.directory / f"{OUTPUT_PREFIX}.xc.extxyz", ":", format="extxyz")
            for atoms in frames:  # i-PI stores the centroid in its own column
                atoms.positions = atoms.arrays.pop("x_centroid")
        else:
            files = self.bead_trajectory_files()
            if not 0 <= bead < len(files):
                raise ValueError(f"bead must be in 0..{len(files) - 1}, got {bead}")
            frames = read(files[bead], ":", format="extxyz")
            force_file = self.directory / files[bead].name.replace(".pos_", ".for_")
            if force_file.exists():
                for atoms, f in zip(frames, read(force_file, ":", format="extxyz")):
                    atoms.calc = SinglePointCalculator(atoms, forces=f.get_forces())
        for atoms in frames:
            atoms.pbc = self.pbc
        return frames

    def averages(self, skip: int = 0) -> dict[str, float]:
        """Means over output rows after the first ``skip`` (equilibration)."""
        sl = slice(skip, None)
        out = {"potential_energy": self.potential_energy[sl].mean(),
               "kinetic_energy_cv": self.kinetic_energy_cv[sl].mean(),
               "temperature": self.temperature[sl].mean(), "pressure": self.pressure[sl].mean(),
               "volume": self.volume[sl].mean()}
        for sym, ke in self.kinetic_energy_per_atom.items():
            out[f"kinetic_energy_per_atom({sym})"] = ke[sl].mean()
        return {k: float(v) for k, v in out.items()}


def _voigt_ipi_to_3x3(v: np.ndarray) -> np.ndarray:
    """i-PI's six components [xx, yy, zz, xy, xz, yz] to full symmetric tensors."""
    xx, yy, zz, xy, xz, yz = np.moveaxis(np.asarray(v).reshape(-1, 6), 1, 0)
    return np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1),
                     np.stack([xz, yz, zz], -1)], -2)


def read_pimd_results(directory: str | os.PathLike) -> PIMDResults:
    """Parse the outputs of a run made with :func:`cace_calc.pimd.run_pimd` (or an input from
    :func:`cace_calc.pimd.write_pimd_input`) in ``directory``."""
    directory = Path(directory)
    props = read_properties(directory / f"{OUTPUT_PREFIX}.out")
    structure = read(directory / "structure.extxyz")
    symbols = structure.get_chemical_symbols()
    per_atom = {}
    for sym in dict.fromkeys(symbols):
        key = f"kinetic_cv({sym})"
        if key in props:
            per_atom[sym] = props[key] * HARTREE / symbols.count(sym)
    beads = props["bead_potentials"]
    if beads.ndim == 1:
        beads = beads[:, None]
    return PIMDResults(
        directory=directory, step=props["step"].astype(int), time_ps=props["time{picosecond}"],
        potential_energy=props["potential"] * HARTREE, bead_potential_energies=beads * HARTREE,
        kinetic_energy_cv=props["kinetic_cv"] * HARTREE, kinetic_energy_per_atom=per_atom,
        temperature=props["temperature{kelvin}"], pressure=props["pressure_cv"] * _PRESSURE_AU / units.GPa,
        volume=props["volume"] * BOHR**3, virial_stress=_voigt_ipi_to_3x3(props["virial_cv"]) * _PRESSURE_AU,
        conserved=props["conserved"] * HARTREE, pbc=structure.pbc.copy())
