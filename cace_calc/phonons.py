"""Harmonic phonons with phonopy: force constants from finite displacements, band structure
along an automatic high-symmetry path (ASE's ``Cell.bandpath``), density of states and
vibrational thermodynamics.

Units: frequencies in THz (imaginary modes as negative numbers), displacements in A, the free
energy in kJ/mol, entropy and heat capacity Cv in J/K/mol, all per mole of primitive cells
(phonopy's convention), temperatures in K.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from .bulk import CalcOrModel, check_bulk, evaluate_many, lattice_summary, resolve_calculator
from .errors import StressNotAvailableError
from .relax import relax_cell

__all__ = ["ImaginaryModeWarning", "PhononResult", "compute_phonons"]


class ImaginaryModeWarning(UserWarning):
    """The phonon spectrum has imaginary modes beyond the tolerance (a dynamically unstable or
    unrelaxed structure, or a too small supercell)."""


@dataclass
class PhononResult:
    """Phonons of one crystal: the phonopy object and plain arrays.

    Band structure: ``band_qpoints`` (nq, 3; reduced coordinates of the primitive cell's
    reciprocal lattice), ``band_distances`` (nq; 1/A, phonopy's path length without 2 pi),
    ``band_frequencies`` (nq, nbands; THz), ``band_segments`` (start, stop) index ranges of the
    straight pieces, ``band_labels`` and their ``band_label_distances`` ("K|U" marks a jump in
    the path; ``G`` is Gamma). DOS: ``dos_frequencies`` (THz), ``dos`` (states/THz per primitive
    cell). Thermal: ``temperatures`` (K), ``free_energy`` (kJ/mol), ``entropy`` and
    ``heat_capacity`` (Cv, J/K/mol), per mole of primitive cells. ``min_frequency`` (THz) is the
    lowest frequency on the path and the mesh, at ``min_frequency_qpoint``.
    """

    phonopy: object = field(repr=False)
    atoms: Atoms = field(repr=False)
    supercell_matrix: np.ndarray
    displacement: float
    n_displacements: int
    max_force_drift: float
    band_path: str
    band_qpoints: np.ndarray = field(repr=False)
    band_distances: np.ndarray = field(repr=False)
    band_frequencies: np.ndarray = field(repr=False)
    band_segments: list[tuple[int, int]] = field(repr=False)
    band_labels: list[str] = field(repr=False)
    band_label_distances: np.ndarray = field(repr=False)
    dos_frequencies: np.ndarray = field(repr=False)
    dos: np.ndarray = field(repr=False)
    temperatures: np.ndarray = field(repr=False)
    free_energy: np.ndarray = field(repr=False)
    entropy: np.ndarray = field(repr=False)
    heat_capacity: np.ndarray = field(repr=False)
    min_frequency: float
    min_frequency_qpoint: np.ndarray
    imaginary_tol: float = 0.05
    files: dict[str, str] = field(default_factory=dict)

    @property
    def has_imaginary(self) -> bool:
        """True when a frequency is below ``-imaginary_tol`` THz."""
        return self.min_frequency < -self.imaginary_tol

    def frequencies(self, q: Sequence[float]) -> np.ndarray:
        """Frequencies (THz) at the reduced q-point ``q`` of the primitive reciprocal cell."""
        self.phonopy.run_qpoints([np.asarray(q, dtype=float)])
        return np.array(self.phonopy.qpoints.frequencies[0])

    def to_dict(self) -> dict:
        """Plain JSON-ready values (units in the keys; no phonopy object)."""
        return {
            "formula": self.atoms.get_chemical_formula(), "natoms_unitcell": len(self.atoms),
            "cell_A": self.atoms.cell[:].tolist(), "supercell_matrix": self.supercell_matrix.tolist(),
            "displacement_A": self.displacement, "n_displacements": self.n_displacements,
            "max_force_drift_eV_A": self.max_force_drift, "band_path": self.band_path,
            "band_qpoints": self.band_qpoints.tolist(), "band_distances": self.band_distances.tolist(),
            "band_frequencies_THz": self.band_frequencies.tolist(), "band_segments": self.band_segments,
            "band_labels": self.band_labels, "band_label_distances": self.band_label_distances.tolist(),
            "dos_frequencies_THz": self.dos_frequencies.tolist(), "dos": self.dos.tolist(),
            "temperatures_K": self.temperatures.tolist(), "free_energy_kJ_mol": self.free_energy.tolist(),
            "entropy_J_K_mol": self.entropy.tolist(), "heat_capacity_J_K_mol": self.heat_capacity.tolist(),
            "min_frequency_THz": self.min_frequency, "min_frequency_qpoint": self.min_frequency_qpoint.tolist(),
            "files": dict(self.files),
        }

    def table(self) -> str:
        """A short human-readable summary."""
        sc = self.supercell_matrix
        diagonal = np.allclose(sc, np.diag(np.diag(sc)))
        sc_txt = " ".join(str(int(v)) for v in np.diag(sc)) if diagonal else str(sc.tolist())
        gamma = ", ".join(f"{0.0 if abs(v) < 5e-4 else v:.3f}" for v in self.frequencies([0.0, 0.0, 0.0])[:12])
        qmin = ", ".join(f"{v:.3f}" for v in self.min_frequency_qpoint)
        flag = "  <-- imaginary modes" if self.has_imaginary else ""
        lines = [
            (f"Phonons of {self.atoms.get_chemical_formula()} ({len(self.atoms)} atoms in the unit cell, "
             f"supercell {sc_txt}, {self.n_displacements} displacements of {self.displacement} A)"),
            f"  {lattice_summary(self.atoms)}",
            f"  band path {self.band_path}; max frequency {self.band_frequencies.max():.3f} THz",
            f"  lowest frequency {self.min_frequency:.4f} THz at q = ({qmin}){flag}",
            f"  Gamma: {gamma}{' ...' if 3 * len(self.atoms) > 12 else ''} THz",
        ]
        if len(self.temperatures) and self.temperatures.min() <= 300.0 <= self.temperatures.max():
            f, s, c = (np.interp(300.0, self.temperatures, y) for y in (self.free_energy, self.entropy,
                                                                         self.heat_capacity))
            lines.append(f"  300 K: F = {f:.3f} kJ/mol, S = {s:.3f} J/K/mol, Cv = {c:.3f} J/K/mol "
                         "(per mole of primitive cells)")
        for name, path in self.files.items():
            lines.append(f"  wrote {name}: {path}")
        return "\n".join(lines)


def _supercell_matrix(supercell) -> np.ndarray:
    m = np.asarray(supercell)
    if m.shape == (3,):
        m = np.diag(m)
    if m.shape != (3, 3) or not np.allclose(m, np.round(m)):
        raise ValueError(f"supercell must be 3 integers or an integer 3x3 matrix, got {supercell!r}")
    m = np.round(m).astype(int)
    det = round(np.linalg.det(m))
    if det == 0:
        raise ValueError(f"the supercell matrix is singular: {m.tolist()}")
    if det < 0:
        raise ValueError(f"the supercell matrix {m.tolist()} has a negative determinant: repetitions must be "
                         "positive (e.g. 4 4 4)")
    return m


def _to_phonopy(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell[:]),
                        scaled_positions=atoms.get_scaled_positions(wrap=False), masses=atoms.get_masses())


def _to_ase(cell) -> Atoms:
    return Atoms(numbers=cell.numbers, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)


def _band_path(phonon, path: str | None, npoints: int):
    """Run phonopy's band structure along ASE's high-symmetry path of the primitive cell."""
    from ase.cell import Cell
    from ase.dft.kpoints import parse_path_string
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

    bp = Cell(np.array(phonon.primitive.cell)).bandpath(path=path, npoints=0)
    paths = [p for p in parse_path_string(bp.path) if len(p) > 1]
    if not paths:
        raise ValueError(f"the band path {bp.path!r} needs at least two points in one segment")
    unknown = {lab for p in paths for lab in p} - set(bp.special_points)
    if unknown:
        raise ValueError(f"unknown special points {sorted(unknown)}; this cell has {sorted(bp.special_points)}")
    points = [[bp.special_points[lab] for lab in p] for p in paths]
    qpoints, connections = get_band_qpoints_and_path_connections(points, npoints=npoints)
    flat_labels = [lab for p in paths for lab in p]
    phonon.run_band_structure(qpoints, path_connections=connections, labels=flat_labels)
    bs = phonon.band_structure
    distances = np.concatenate(bs.distances)
    frequencies = np.concatenate(bs.frequencies)
    qpts = np.concatenate(bs.qpoints)
    segments, start = [], 0
    for d in bs.distances:
        segments.append((start, start + len(d)))
        start += len(d)
    # label positions: start of every path piece and end of every path; merge labels that meet
    marks = []
    k = 0
    for p in paths:
        for i in range(len(p) - 1):
            marks.append((bs.distances[k][0], p[i]))
            k += 1
        marks.append((bs.distances[k - 1][-1], p[-1]))
    labels, where = [], []
    for x, lab in marks:
        if where and abs(x - where[-1]) < 1e-9:
            if labels[-1] != lab:
                labels[-1] = f"{labels[-1]}|{lab}"
        else:
            labels.append(lab)
            where.append(x)
    return bp.path, qpts, distances, frequencies, segments, labels, np.array(where)


def compute_phonons(atoms: Atoms, calc_or_model: CalcOrModel, *, supercell=(4, 4, 4),
                    displacement: float = 0.01, relax: bool = True, fmax: float = 1e-3,
                    primitive_matrix="auto", mesh: float | Sequence[int] = 40.0, band_path: str | None = None,
                    band_npoints: int = 51, temperatures: Sequence[float] | None = None,
                    symmetrize: bool = True, imaginary_tol: float | None = 0.05,
                    out_dir: str | os.PathLike | None = None, title: str | None = None,
                    device: str = "auto", dtype: str = "float64", batch: bool = True, max_atoms: int = 20000,
                    symprec: float = 1e-5, progress: bool = True) -> PhononResult:
    """Harmonic phonons of a crystal by finite displacements (phonopy).

    atoms: the unit cell (fully periodic); calc_or_model: an ASE calculator or a model
    name/file (then a CACECalculator on ``device`` in ``dtype``).
    supercell: 3 integers or a 3x3 integer matrix applied to ``atoms``' cell.
    displacement: the atomic displacement in A. relax: first relax cell and positions to
    ``fmax`` (eV/A; needs stress). primitive_matrix: phonopy's (``"auto"``, ``"P"``, 3x3).
    mesh: q-point mesh for DOS and thermodynamics, 3 integers or a length in A (phonopy's rule).
    band_path: an ASE path string (default: ASE's for the lattice, e.g. ``GXWKGLUWLK,UX``).
    temperatures: in K (default 0 to 1000 K in steps of 10 K).
    symmetrize: symmetrize the force constants (translational invariance, index permutation).
    imaginary_tol: warn with :class:`ImaginaryModeWarning` when a frequency is below
    ``-imaginary_tol`` THz (None: never). out_dir: write phonopy_params.yaml (with force
    constants), band.yaml, total_dos.dat, thermal_properties.yaml, bands_dos.png and thermal.png.
    Forces of all displaced supercells come from one batched call for a CACECalculator
    (``batch``, at most ``max_atoms`` atoms per call); the mean force of each supercell (drift)
    is subtracted.
    """
    from phonopy import Phonopy

    check_bulk(atoms)
    if not 0 < displacement < 0.5:
        raise ValueError(f"displacement must be in (0, 0.5) A, got {displacement}")
    if band_npoints < 2:
        raise ValueError(f"band_npoints must be at least 2, got {band_npoints}")
    sc_matrix = _supercell_matrix(supercell)
    temps = np.arange(0.0, 1000.0 + 1e-9, 10.0) if temperatures is None else np.asarray(temperatures, float)
    if temps.ndim != 1 or len(temps) == 0 or (temps < 0).any():
        raise ValueError("temperatures must be a non-empty 1D sequence of non-negative values (K)")
    calc = resolve_calculator(calc_or_model, device=device, dtype=dtype)

    def log(msg):
        if progress:
            print(f"phonons: {msg}", flush=True)

    if relax:
        log(f"relaxing cell and positions of {atoms.get_chemical_formula()} (fmax {fmax} eV/A)")
        try:
            unitcell = relax_cell(atoms, calc, fmax=fmax)
        except StressNotAvailableError as e:
            raise StressNotAvailableError(f"{e}; relaxing the cell needs stress: pass relax=False (--no-relax) "
                                          "to use the structure as given") from e
        log(f"relaxed: {lattice_summary(unitcell)}")
    else:
        unitcell = atoms.copy()
        unitcell.set_constraint()

    phonon = Phonopy(_to_phonopy(unitcell), supercell_matrix=sc_matrix, primitive_matrix=primitive_matrix,
                     symprec=symprec)
    phonon.generate_displacements(distance=displacement)
    supercells = [_to_ase(s) for s in phonon.supercells_with_displacements]
    log(f"{len(supercells)} displaced supercells of {len(supercells[0])} atoms")
    results = evaluate_many(supercells, calc, ("forces",), batch=batch, max_atoms=max_atoms,
                            progress=log if progress else None)
    forces = np.array([r["forces"] for r in results])
    drift = forces.mean(axis=1, keepdims=True)
    forces = forces - drift
    max_drift = float(np.linalg.norm(drift, axis=-1).max())
    log(f"largest force drift {max_drift:.2e} eV/A (subtracted)")
    phonon.forces = forces
    phonon.produce_force_constants(show_drift=False)
    if symmetrize:
        phonon.symmetrize_force_constants(show_drift=False)

    log("band structure, DOS and thermal properties")
    path, qpts, dist, freqs, segments, labels, label_x = _band_path(phonon, band_path, band_npoints)
    phonon.run_mesh(mesh, is_gamma_center=True)
    phonon.run_total_dos()
    phonon.run_thermal_properties(temperatures=temps, exclude_gamma_acoustic=True)
    tp = phonon.thermal_properties
    mesh_freqs = np.asarray(phonon.mesh.frequencies)
    candidates = [(freqs.min(axis=1), qpts), (mesh_freqs.min(axis=1), np.asarray(phonon.mesh.qpoints))]
    fmin, qmin = min(((f.min(), q[f.argmin()]) for f, q in candidates), key=lambda t: t[0])
    result = PhononResult(
        phonopy=phonon, atoms=unitcell, supercell_matrix=sc_matrix, displacement=displacement,
        n_displacements=len(supercells), max_force_drift=max_drift, band_path=path, band_qpoints=qpts,
        band_distances=dist, band_frequencies=freqs, band_segments=segments, band_labels=labels,
        band_label_distances=label_x, dos_frequencies=np.array(phonon.total_dos.frequency_points),
        dos=np.array(phonon.total_dos.dos), temperatures=np.array(tp.temperatures),
        free_energy=np.array(tp.free_energy), entropy=np.array(tp.entropy),
        heat_capacity=np.array(tp.heat_capacity), min_frequency=float(fmin),
        min_frequency_qpoint=np.array(qmin, dtype=float),
        imaginary_tol=0.05 if imaginary_tol is None else float(imaginary_tol))
    if imaginary_tol is not None and fmin < -imaginary_tol:
        warnings.warn(f"imaginary phonon modes in {unitcell.get_chemical_formula()}: lowest frequency "
                      f"{fmin:.3f} THz at q = ({', '.join(f'{v:.3f}' for v in qmin)}) (reduced coordinates of "
                      "the primitive reciprocal cell); the structure may be unstable or unrelaxed, or the "
                      "supercell too small", ImaginaryModeWarning, stacklevel=2)
    if out_dir is not None:
        result.files = _write_outputs(result, Path(out_dir), title)
        log(f"wrote {len(result.files)} files to {out_dir}")
    return result


def _write_outputs(result: PhononResult, out: Path, title: str | None) -> dict[str, str]:
    from .plots import plot_bands_dos, plot_thermal

    out.mkdir(parents=True, exist_ok=True)
    ph = result.phonopy
    files = {"phonopy_params": out / "phonopy_params.yaml", "band": out / "band.yaml",
             "total_dos": out / "total_dos.dat", "thermal_properties": out / "thermal_properties.yaml"}
    ph.save(files["phonopy_params"], settings={"force_constants": True})
    ph.write_yaml_band_structure(filename=files["band"])
    ph.write_total_dos(filename=files["total_dos"])
    ph.write_yaml_thermal_properties(filename=files["thermal_properties"])
    name = title or f"{result.atoms.get_chemical_formula()} phonons"
    files["bands_dos_plot"] = plot_bands_dos(result, out / "bands_dos.png", title=name)
    files["thermal_plot"] = plot_thermal(result, out / "thermal.png", title=name)
    return {k: str(v) for k, v in files.items()}
