"""Helpers of the LAMMPS tests: structures in LAMMPS' form, data files, runs and their outputs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers

# LAMMPS metal units: pressure in bar from eV/A^3 (its nktv2p; ASE's CODATA value differs by 8e-8)
BAR_PER_EV_A3 = 1.6021765e6
NBMOTAW = ["Nb", "Mo", "Ta", "W"]


def random_alloy(reps=(3, 3, 3), tilt=(0.0, 0.0, 0.0), rattle=0.05, seed=1, a=3.23) -> Atoms:
    """A random NbMoTaW bcc alloy of cubic cells ``reps``, sheared by ``tilt`` (xy, xz, yz as
    fractions of the box lengths) into a cell with lower-triangular rows (LAMMPS' form), rattled."""
    atoms = bulk("W", "bcc", a=a, cubic=True).repeat(reps)
    rng = np.random.default_rng(seed)
    atoms.symbols = rng.choice(NBMOTAW, size=len(atoms))
    cell = atoms.cell.array.copy()
    lx, ly, lz = np.diag(cell)
    cell[1, 0] = tilt[0] * lx
    cell[2, 0] = tilt[1] * lx
    cell[2, 1] = tilt[2] * ly
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    atoms.wrap()
    return atoms


def water_structure() -> Atoms | None:
    """64 liquid H2O: the package's shipped structure if there is one, else the development data's
    liquid-64.xyz; None when neither exists."""
    import ase.io

    try:
        from cace_calc.data import structure

        atoms = structure("water-64")
    except (ImportError, KeyError):
        path = Path(__file__).resolve().parents[3] / "shared" / "reference" / "liquid-64.xyz"
        if not path.is_file():
            return None
        atoms = ase.io.read(path)
    atoms.wrap()
    return atoms


def write_data(atoms: Atoms, path: Path, elements: list[str]) -> None:
    """A LAMMPS data file (atom_style atomic, one type per element of ``elements``); the cell
    must have lower-triangular rows (a along x, b in the xy plane)."""
    c = atoms.cell.array
    if abs(c[0, 1]) + abs(c[0, 2]) + abs(c[1, 2]) > 1e-12:
        raise ValueError("cell is not in LAMMPS' form")
    lines = ["cace_calc test", "", f"{len(atoms)} atoms", f"{len(elements)} atom types", "",
             f"0 {c[0, 0]:.17g} xlo xhi", f"0 {c[1, 1]:.17g} ylo yhi", f"0 {c[2, 2]:.17g} zlo zhi",
             f"{c[1, 0]:.17g} {c[2, 0]:.17g} {c[2, 1]:.17g} xy xz yz", "", "Masses", ""]
    lines += [f"{i + 1} {atomic_masses[atomic_numbers[s]]:.17g}" for i, s in enumerate(elements)]
    lines += ["", "Atoms # atomic", ""]
    types = [elements.index(s) + 1 for s in atoms.get_chemical_symbols()]
    lines += [f"{i + 1} {t} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}" for i, (t, p) in enumerate(zip(types, atoms.positions))]
    path.write_text("\n".join(lines) + "\n")


def run(folder: Path, text: str, np_: int = 1, name: str = "in.test"):
    """Run LAMMPS input ``text`` in ``folder`` on ``np_`` ranks; returns the finished process."""
    from cace_calc.lammps import run_lammps

    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return run_lammps(folder / name, np=np_, capture=True, timeout=900)


def check_ok(proc) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def results(out: str) -> dict[str, float]:
    """Values printed as ``RESULT name value`` lines."""
    return {m[0]: float(m[1]) for m in re.findall(r"^RESULT (\S+) (\S+)$", out, flags=re.M)}


def read_dump(path: Path) -> list[np.ndarray]:
    """Frames of a ``dump custom`` text file sorted by id, as arrays of its columns."""
    frames, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        n = int(lines[i + 3])
        frames.append(np.array([[float(v) for v in ln.split()] for ln in lines[i + 9:i + 9 + n]]))
        i += 9 + n
    return frames


RESULT_LINES = """variable e equal pe
print "RESULT energy $(pe:%.15g)"
print "RESULT pxx $(pxx:%.15g)"
print "RESULT pyy $(pyy:%.15g)"
print "RESULT pzz $(pzz:%.15g)"
print "RESULT pxy $(pxy:%.15g)"
print "RESULT pxz $(pxz:%.15g)"
print "RESULT pyz $(pyz:%.15g)"
print "RESULT press $(press:%.15g)"
"""
