"""Helpers shared by the collision-cascade examples cascade.py (ASE) and cascade_lammps.py
(LAMMPS): the cell, the primary knock-on atom (PKA), the adaptive time step, the closest
approach, the Wigner-Seitz defect count, the summary and the plot. Not an example itself.

Units: positions in A, energies in eV, times in ps (ASE's own time unit only inside cascade.py).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

ELEMENTS = ("Nb", "Mo", "Ta", "W")  # the pretrained nbmotaw model's elements; LAMMPS types 1-4
LATTICE = {"W": 3.18, "NbMoTaW": 3.23}  # A: near the PBE value for W; Vegard's law for the alloy
DIRECTION = (1.0, 3.0, 5.0)  # a high-index direction: no channelling along a close-packed row
AMU_A2_PS2_IN_EV = 1.0364269e-4  # 1 amu (A/ps)^2 in eV: LAMMPS' mvv2e in metal units
DISPLACED_A = 0.9  # an atom that moved further than this (A) counts as displaced


def build_cell(element: str, size: int, lattice: float | None = None, seed: int = 0) -> Atoms:
    """A perfect bcc cell of size^3 cubic cells (2 size^3 atoms) at 0 K: pure W, or the equimolar
    NbMoTaW alloy (tiles of the shipped SQS-like ``nbmotaw-128`` when size is a multiple of 4,
    else a random occupation, which needs an even size)."""
    a = lattice or LATTICE[element]
    if element == "W":
        return bulk("W", "bcc", a=a, cubic=True).repeat(size)
    if element != "NbMoTaW":
        raise ValueError(f"element must be W or NbMoTaW, got {element!r}")
    if size % 4 == 0:
        from cace_calc.data import structure

        atoms = structure("nbmotaw-128").repeat(size // 4)
        atoms.set_cell(atoms.cell.array * a / 3.23, scale_atoms=True)
        return atoms
    if size % 2:
        raise ValueError(f"an equimolar alloy of {2 * size**3} atoms is impossible: use an even --size")
    atoms = bulk("W", "bcc", a=a, cubic=True).repeat(size)
    species = np.repeat(ELEMENTS, len(atoms) // 4)
    atoms.set_chemical_symbols(np.random.default_rng(seed).permutation(species).tolist())
    return atoms


def centre_atom(atoms: Atoms, symbol: str = "W") -> int:
    """The atom on the lattice site at the centre of the cell, made a ``symbol`` atom (in an alloy
    it swaps species with the nearest ``symbol`` atom, which keeps the composition)."""
    centre = atoms.cell.array.sum(axis=0) / 2
    i = int(np.argmin(np.linalg.norm(atoms.positions - centre, axis=1)))
    symbols = atoms.get_chemical_symbols()
    if symbols[i] != symbol:
        others = [j for j, s in enumerate(symbols) if s == symbol]
        j = others[int(np.argmin(np.linalg.norm(atoms.positions[others] - atoms.positions[i], axis=1)))]
        symbols[i], symbols[j] = symbols[j], symbols[i]
        atoms.set_chemical_symbols(symbols)
    return i


def pka_velocities(masses: np.ndarray, pka: int, energy_ev: float, direction=DIRECTION,
                   mvv2e: float = AMU_A2_PS2_IN_EV) -> np.ndarray:
    """Velocities (A/ps) at 0 K with atom ``pka`` moving along ``direction`` with kinetic energy
    ``energy_ev`` and every other atom recoiling equally so that the total momentum is zero (the
    cell does not drift; the others share about energy / N). ``mvv2e``: 1 amu (A/ps)^2 in eV
    (LAMMPS' value; ASE's differs by 6e-8)."""
    d = np.asarray(direction, dtype=float)
    d /= np.linalg.norm(d)
    v = np.zeros((len(masses), 3))
    v_pka = np.sqrt(2.0 * energy_ev / (masses[pka] * mvv2e)) * d
    v[:] = -masses[pka] * v_pka / (masses.sum() - masses[pka])
    v[pka] = v_pka
    return v


def adaptive_dt(velocities: np.ndarray, forces: np.ndarray, masses: np.ndarray, xmax: float,
                dt_min: float | None, dt_max: float | None, mvv2e: float = AMU_A2_PS2_IN_EV) -> float:
    """The step (ps) after which no atom has moved more than ``xmax`` (A), estimated from the
    velocities (A/ps), forces (eV/A) and masses (amu) as LAMMPS' ``fix dt/reset`` does, so that
    both versions take the same steps: per atom the smaller of xmax/|v| and sqrt(2 xmax/|a|),
    shrunk further if |v dt + a dt^2/2| still exceeds xmax; then the smallest over the atoms,
    within [dt_min, dt_max] (None: no bound)."""
    accel = forces / (masses[:, None] * mvv2e)  # A/ps^2
    speed = np.linalg.norm(velocities, axis=1)
    a_abs = np.linalg.norm(accel, axis=1)
    dt = np.full(len(masses), np.inf)  # atoms at rest with no force: no bound
    np.divide(xmax, speed, out=dt, where=speed > 0)
    pushed = a_abs > 0
    dt[pushed] = np.minimum(dt[pushed], np.sqrt(2.0 * xmax / a_abs[pushed]))
    some = np.isfinite(dt)
    step = np.linalg.norm(velocities[some] * dt[some, None] + 0.5 * accel[some] * dt[some, None] ** 2, axis=1)
    dt[some] = np.where(step > xmax, dt[some] * xmax / np.maximum(step, xmax), dt[some])
    result = float(dt.min())
    if dt_max is not None:
        result = min(result, dt_max)
    if dt_min is not None:
        result = max(result, dt_min)
    if not np.isfinite(result):
        raise ValueError("no atom moves and no force acts: give dt_max")
    return result


def _box(cell: np.ndarray) -> np.ndarray:
    cell = np.asarray(cell, dtype=float)
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-9:
        raise ValueError("the cascade analysis needs an orthorhombic cell")
    return np.diag(cell).copy()


def _wrapped(positions: np.ndarray, box: np.ndarray) -> np.ndarray:
    x = np.mod(positions, box)
    return np.where(x >= box, 0.0, x)  # mod can round up to the box length itself


def closest_pair(positions: np.ndarray, cell: np.ndarray) -> tuple[float, int, int]:
    """The shortest distance between two atoms (A, minimum image, periodic orthorhombic cell)
    and the two atoms."""
    from scipy.spatial import cKDTree

    box = _box(cell)
    x = _wrapped(positions, box)
    d, j = cKDTree(x, boxsize=box).query(x, k=2)
    i = int(np.argmin(d[:, 1]))
    return float(d[i, 1]), i, int(j[i, 1])


@dataclass
class Defects:
    """Damage at the end, against the perfect lattice at the start."""
    vacancies: int  # Wigner-Seitz cells of the perfect lattice left empty
    interstitials: int  # atoms beyond the first in a cell (as many as vacancies: N atoms, N cells)
    replaced: int  # atoms that ended in a cell other than their own
    displaced: int  # atoms further than `threshold` from where they started
    threshold: float
    max_displacement: float

    @property
    def frenkel_pairs(self) -> int:
        return self.vacancies


def count_defects(sites: np.ndarray, start: np.ndarray, end: np.ndarray, cell: np.ndarray,
                  threshold: float = DISPLACED_A) -> Defects:
    """Wigner-Seitz analysis: each atom at the end belongs to the cell of the nearest site of the
    perfect lattice ``sites`` (minimum image); an empty cell is a vacancy, every atom beyond the
    first in a cell an interstitial. Displacements are ``end - start`` (unwrapped positions, the
    same atoms in the same order; ``sites[i]`` is atom i's own site)."""
    from scipy.spatial import cKDTree

    box = _box(cell)
    _, cell_of = cKDTree(_wrapped(sites, box), boxsize=box).query(_wrapped(end, box))
    occupancy = np.bincount(cell_of, minlength=len(sites))
    moved = np.linalg.norm(end - start, axis=1)
    return Defects(vacancies=int((occupancy == 0).sum()), interstitials=int(np.maximum(occupancy - 1, 0).sum()),
                   replaced=int((cell_of != np.arange(len(sites))).sum()), displaced=int((moved > threshold).sum()),
                   threshold=threshold, max_displacement=float(moved.max()))


@dataclass
class Series:
    """What is recorded every step (time in ps, energies in eV, distances in A)."""
    time: list = field(default_factory=list)
    dt: list = field(default_factory=list)  # the step taken next (ps)
    etotal: list = field(default_factory=list)
    ke_max: list = field(default_factory=list)  # the largest kinetic energy of one atom
    closest: list = field(default_factory=list)

    def add(self, time, dt, etotal, ke_max, closest):
        for name, value in zip(("time", "dt", "etotal", "ke_max", "closest"), (time, dt, etotal, ke_max, closest)):
            getattr(self, name).append(float(value))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in vars(self).items()}


def summarise(series: Series, defects: Defects, **info) -> dict:
    """The JSON summary: ``info`` (the set-up) with the energy conservation, the closest
    approach, the time step and the defects at the end."""
    s = series.arrays()
    drift = s["etotal"] - s["etotal"][0]
    k = int(np.argmin(s["closest"]))
    return {**info,
            "steps": len(s["time"]) - 1, "time_ps": float(s["time"][-1]),
            "dt_min_fs": float(s["dt"][:-1].min() * 1e3) if len(s["dt"]) > 1 else None,
            "dt_max_fs": float(s["dt"][:-1].max() * 1e3) if len(s["dt"]) > 1 else None,
            "energy_start_ev": float(s["etotal"][0]),
            "energy_drift_ev": float(drift[-1]), "energy_drift_max_ev": float(np.abs(drift).max()),
            "closest_approach_a": float(s["closest"][k]), "closest_approach_time_ps": float(s["time"][k]),
            "ke_max_end_ev": float(s["ke_max"][-1]),
            "vacancies": defects.vacancies, "interstitials": defects.interstitials,
            "frenkel_pairs": defects.frenkel_pairs, "replaced_atoms": defects.replaced,
            "displaced_atoms": defects.displaced, "displaced_threshold_a": defects.threshold,
            "max_displacement_a": defects.max_displacement}


def report(summary: dict, out: Path, series: Series, title: str) -> None:
    """Print the summary lines, write summary.json, series.csv and cascade.png to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    s = series.arrays()
    np.savetxt(out / "series.csv", np.column_stack([s[k] for k in ("time", "dt", "etotal", "ke_max", "closest")]),
               delimiter=",", header="time_ps,dt_ps,etotal_ev,ke_max_ev,closest_a", comments="")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(series, out / "cascade.png", title)
    print(f"{summary['steps']} steps to {summary['time_ps']:.4f} ps (dt {summary['dt_min_fs']:.4f}-"
          f"{summary['dt_max_fs']:.4f} fs), {summary['ms_per_step']:.1f} ms per step")
    print(f"energy drift {summary['energy_drift_ev']:+.4f} eV (largest {summary['energy_drift_max_ev']:.4f} eV) "
          f"of E0 = {summary['energy_start_ev']:.3f} eV")
    print(f"closest approach {summary['closest_approach_a']:.3f} A at {summary['closest_approach_time_ps']:.4f} ps")
    print(f"at the end: {summary['frenkel_pairs']} Frenkel pairs (Wigner-Seitz: {summary['vacancies']} vacancies, "
          f"{summary['interstitials']} interstitials), {summary['replaced_atoms']} atoms off their own site, "
          f"{summary['displaced_atoms']} displaced > {summary['displaced_threshold_a']} A "
          f"(largest {summary['max_displacement_a']:.2f} A)")
    print(f"wrote {out / 'summary.json'}, {out / 'series.csv'} and {out / 'cascade.png'}")
    sys.stdout.flush()


def plot(series: Series, path: Path, title: str) -> None:
    """Energy drift, the largest atomic kinetic energy with the time step, and the closest approach
    against time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = series.arrays()
    t = s["time"] * 1e3  # fs
    fig = Figure(figsize=(7.0, 8.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax_e, ax_k, ax_d = fig.subplots(3, 1, sharex=True)
    ax_e.plot(t, s["etotal"] - s["etotal"][0], color="C0")
    ax_e.axhline(0.0, color="0.5", lw=0.6)
    ax_e.set_ylabel("E_total - E_total(0) (eV)")
    ax_k.semilogy(t, np.maximum(s["ke_max"], 1e-6), color="C1")
    ax_k.set_ylabel("largest atomic KE (eV)", color="C1")
    ax_dt = ax_k.twinx()
    ax_dt.plot(t, s["dt"] * 1e3, color="C2")
    ax_dt.set_ylabel("time step (fs)", color="C2")
    ax_d.plot(t, s["closest"], color="C3")
    ax_d.set_ylabel("closest pair (A)")
    ax_d.set_xlabel("time (fs)")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)


def add_arguments(parser, fast_note: str) -> None:
    """The arguments both examples take."""
    parser.add_argument("--model", default="nbmotaw", help="pretrained model name or model file (nbmotaw)")
    parser.add_argument("--element", choices=["W", "NbMoTaW"], default="W", help="bcc W or the equimolar alloy (W)")
    parser.add_argument("--size", type=int, help="cubic bcc cells per edge: 2 size^3 atoms (8: 1024 atoms)")
    parser.add_argument("--lattice", type=float, help="lattice constant, A (W 3.18, NbMoTaW 3.23)")
    parser.add_argument("--energy-ev", type=float, help="PKA kinetic energy, eV (1000)")
    parser.add_argument("--direction", type=float, nargs=3, default=DIRECTION, help="PKA direction (1 3 5)")
    parser.add_argument("--time-ps", type=float, help="simulated time, ps (0.1: the ballistic phase)")
    parser.add_argument("--xmax", type=float, default=0.03, help="largest move of any atom per step, A (0.03)")
    parser.add_argument("--dt-max", type=float, default=1.0, help="longest time step, fs (1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a random alloy occupation")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--fast", action="store_true", help=fast_note)


def settings(args, fast: bool) -> dict:
    """The run's settings with the defaults of a full (or --fast) run filled in."""
    fast_size = 3 if args.element == "W" else 4
    return {"size": args.size or (fast_size if fast else 8),
            "energy_ev": args.energy_ev or (200.0 if fast else 1000.0),
            "time_ps": args.time_ps or (0.03 if fast else 0.1)}
