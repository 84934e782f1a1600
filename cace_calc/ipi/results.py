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
from .inputs import COMMITTEE_OUTPUT, OUTPUT_PREFIX
from .watch import UncertaintyLog, read_uncertainty_log

FINAL_FRAMES = "final.extxyz"  # every bead of the last step, written after a stop by max_uncertainty

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
    committee_energies: for a committee run (``uncertainty=True``), (n, beads, K) every
        member's potential energy on each bead as i-PI reports it (deviations from the mean
        rescaled by its ``alpha``), eV; else ``None``.
    committee_uncertainty: (n, beads) i-PI's committee uncertainty of each bead's potential
        energy (the members' sample standard deviation, ddof=1, after rescaling), eV; or ``None``.
    n_atoms: atoms in the system.
    force_uncertainty: for a committee run, the drivers' watch of the calibrated per-atom force
        sigma (:class:`cace_calc.ipi.watch.UncertaintyLog`: the largest of the run in eV/A, its
        atom and driver call, the threshold warning, whether ``max_uncertainty`` stopped the
        run); else ``None``.
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
    committee_energies: np.ndarray | None = None
    committee_uncertainty: np.ndarray | None = None
    n_atoms: int = 0
    force_uncertainty: UncertaintyLog | None = None

    @property
    def n_beads(self) -> int:
        return self.bead_potential_energies.shape[1]

    @property
    def committee_potential_energy(self) -> np.ndarray | None:
        """(n, K) each member's bead-averaged potential energy, eV (the potential energy of
        the ring polymer as that member sees it; what committee reweighting needs)."""
        return None if self.committee_energies is None else self.committee_energies.mean(axis=1)

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
        """Means over output rows after the first ``skip`` (equilibration).

        A committee run adds ``committee_uncertainty_per_atom`` (mean over rows and beads of
        i-PI's committee uncertainty divided by the atom count, eV/atom),
        ``committee_uncertainty_per_atom_max`` (its largest value) and
        ``potential_energy_uncertainty`` (eV: the sample standard deviation over members of
        each member's average potential energy, without reweighting).
        """
        sl = slice(skip, None)
        out = {"potential_energy": self.potential_energy[sl].mean(),
               "kinetic_energy_cv": self.kinetic_energy_cv[sl].mean(),
               "temperature": self.temperature[sl].mean(), "pressure": self.pressure[sl].mean(),
               "volume": self.volume[sl].mean()}
        for sym, ke in self.kinetic_energy_per_atom.items():
            out[f"kinetic_energy_per_atom({sym})"] = ke[sl].mean()
        if self.committee_uncertainty is not None and len(self.committee_uncertainty[sl]):
            per_atom = self.committee_uncertainty[sl] / self.n_atoms
            out["committee_uncertainty_per_atom"] = per_atom.mean()
            out["committee_uncertainty_per_atom_max"] = per_atom.max()
            out["potential_energy_uncertainty"] = self.committee_potential_energy[sl].mean(axis=0).std(ddof=1)
        return {k: float(v) for k, v in out.items()}


def _voigt_ipi_to_3x3(v: np.ndarray) -> np.ndarray:
    """i-PI's six components [xx, yy, zz, xy, xz, yz] to full symmetric tensors."""
    xx, yy, zz, xy, xz, yz = np.moveaxis(np.asarray(v).reshape(-1, 6), 1, 0)
    return np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1),
                     np.stack([xz, yz, zz], -1)], -2)


def read_committee(directory: str | os.PathLike, n_beads: int) -> tuple[np.ndarray, np.ndarray] | None:
    """i-PI's per-bead committee outputs (``simulation.committee_K``, written by an input with
    ``committee=True``) as ``(uncertainty (n, beads), energies (n, beads, K))`` in eV, or
    ``None`` when the run has none. A partly written last row is dropped."""
    directory = Path(directory)
    files = [directory / f"{OUTPUT_PREFIX}.{COMMITTEE_OUTPUT}_{b}" for b in range(n_beads)]
    if not files[0].exists():
        return None
    beads = []
    for path in files:
        rows = [line.split() for line in path.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        width = len(rows[0]) if rows else 1
        beads.append(np.array([r for r in rows if len(r) == width], dtype=float).reshape(-1, width))
    n = min(len(b) for b in beads)
    data = np.stack([b[:n] for b in beads], axis=1) * HARTREE  # (n, beads, 1 + K)
    return data[..., 0], data[..., 1:]


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
    committee = read_committee(directory, beads.shape[1])
    if committee is not None:  # the same rows as the properties (same stride, from step 0)
        n = min(len(committee[0]), len(beads))
        props = {k: v[:n] for k, v in props.items()}
        beads, committee = beads[:n], (committee[0][:n], committee[1][:n])
    logs = sorted(directory.glob("uncertainty*.log"))  # the drivers' force uncertainty watch
    return PIMDResults(
        directory=directory, step=props["step"].astype(int), time_ps=props["time{picosecond}"],
        potential_energy=props["potential"] * HARTREE, bead_potential_energies=beads * HARTREE,
        kinetic_energy_cv=props["kinetic_cv"] * HARTREE, kinetic_energy_per_atom=per_atom,
        temperature=props["temperature{kelvin}"], pressure=props["pressure_cv"] * _PRESSURE_AU / units.GPa,
        volume=props["volume"] * BOHR**3, virial_stress=_voigt_ipi_to_3x3(props["virial_cv"]) * _PRESSURE_AU,
        conserved=props["conserved"] * HARTREE, pbc=structure.pbc.copy(),
        committee_uncertainty=None if committee is None else committee[0],
        committee_energies=None if committee is None else committee[1], n_atoms=len(structure),
        force_uncertainty=read_uncertainty_log(logs))


def _xml_array(text: str) -> list[str]:
    """The items of an i-PI array in XML (``[ a, b, ... ]``)."""
    return [x for x in text.replace("[", " ").replace("]", " ").replace(",", " ").split() if x]


def read_restart_beads(path: str | os.PathLike, pbc=True) -> list[Atoms]:
    """Every bead of the state i-PI saved in a checkpoint (``RESTART``, written when a run
    ends, also softly through an ``EXIT`` file), as ASE Atoms in Angstrom with the cell, bead 0
    first; ``info`` holds ``step`` (the step of that state, as in ``simulation.out``) and
    ``bead``. i-PI writes 9 significant digits (Bohr).

    After a soft exit that interrupted a step, i-PI saves the last state it kept (every
    ``safe_stride`` steps of the input), which is the last completed step only with
    ``safe_stride='1'`` (as :func:`cace_calc.pimd.run_pimd` writes with ``max_uncertainty``).
    """
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    system = root.find("system")
    beads = system.find("beads") if system is not None else None
    if beads is None:
        raise ValueError(f"{path} holds no i-PI system with beads")
    nbeads, natoms = int(beads.get("nbeads")), int(beads.get("natoms"))
    q = np.array(_xml_array(beads.find("q").text), dtype=float).reshape(nbeads, natoms, 3) * BOHR
    names = _xml_array(beads.find("names").text)
    cell = np.array(_xml_array(system.find("cell").text), dtype=float).reshape(3, 3).T * BOHR  # h: columns
    step = int(root.findtext("step", "0"))  # i-PI leaves out a step of 0
    frames = []
    for b in range(nbeads):
        atoms = Atoms(symbols=names, positions=q[b], cell=cell, pbc=pbc)
        atoms.info.update(step=step, bead=b)
        frames.append(atoms)
    return frames
