"""Make the structures shipped in cace_calc/data (nothing read from ../shared).

water-64: 64 H2O at 0.997 g/cm3 in a cubic box, placed on a 4x4x4 grid with random
orientations, then Langevin NVT MD at 300 K with the pretrained ``water`` model
(float32, 0.5 fs): --hot-ps with strong friction to melt the grid, then --ps with the usual
friction. The last frame is written (positions only, wrapped into the box).

nbmotaw-128: a 4x4x4 cubic bcc cell (128 sites) with 32 atoms each of Nb, Mo, Ta and W,
arranged so that the pair correlations of the first two neighbour shells are close to those of
an ideal random alloy (an SQS-like cell found by random swaps); lattice constant from Vegard's
law over ASE's reference bcc lattice constants (unrelaxed: relax it with the model you use).

    python scripts/make_structures.py water --out cace_calc/data/water-64.xyz
    python scripts/make_structures.py nbmotaw --out cace_calc/data/nbmotaw-128.xyz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from ase import Atoms

AVOGADRO = 6.02214076e23


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def water_grid(n_side: int = 4, density: float = 0.997, seed: int = 0) -> Atoms:
    """n_side^3 water molecules with random orientations on a cubic grid; density in g/cm3."""
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    n = n_side**3
    mass_g = n * molecule("H2O").get_masses().sum() / AVOGADRO
    length = (mass_g / density * 1e24) ** (1 / 3)  # A
    spacing = length / n_side
    h2o = molecule("H2O")
    h2o.positions -= h2o.get_center_of_mass()
    atoms = Atoms(cell=[length] * 3, pbc=True)
    for idx in np.ndindex(n_side, n_side, n_side):
        m = h2o.copy()
        m.positions = m.positions @ _random_rotation(rng).T
        m.positions += (np.array(idx) + 0.5) * spacing + rng.normal(scale=0.1, size=3)
        atoms += m
    return atoms


def make_water(args) -> Atoms:
    from cace_calc import CACECalculator
    from cace_calc.md import run_md
    from cace_calc.rdf import radial_distribution

    atoms = water_grid(seed=args.seed)
    calc = CACECalculator(args.model, dtype="float32")
    chunk = 250  # steps per run_md call, each with its own noise seed; a line after each
    stages = [("melt", 0.1, round(args.hot_ps * 2000)), ("equilibrate", 0.01, round(args.ps * 2000))]
    k, temps = 0, []
    for stage, friction, steps in stages:
        for start in range(0, steps, chunk):
            res = run_md(atoms, calc, temperature=300.0, steps=min(chunk, steps - start), timestep=0.5,
                         friction=friction, seed=args.seed + k, progress=False, log_every=10)
            atoms, k = res.atoms, k + 1
            if stage == "equilibrate":
                temps.append(res.temperature_mean_k)
            print(f"{stage}: {start + res.steps}/{steps} steps, T {res.temperature_mean_k:.0f} K, "
                  f"Epot {res.potential_energy_mean_ev:.3f} eV, {res.ms_per_step:.0f} ms per step", flush=True)
    n_steps = sum(s for _, _, s in stages)
    print(f"{len(atoms)} atoms, box {atoms.cell[0, 0]:.3f} A, {n_steps} steps; mean T while equilibrating "
          f"{np.mean(temps):.1f} K")
    o = atoms.numbers == 8
    d = atoms.get_all_distances(mic=True)
    oh = d[np.ix_(atoms.numbers == 1, o)].min(axis=1)
    r, g = radial_distribution([atoms], "O", "O", r_max=6.0, n_bins=60)
    print(f"longest O-H bond {oh.max():.3f} A; O-O g(r) peak at {r[g.argmax()]:.2f} A (one frame)")
    if oh.max() > 1.3:
        raise SystemExit("a molecule broke up: not written")
    out = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    out.wrap()
    out.info.update(source="cace_calc scripts/make_structures.py water", model=str(args.model),
                    md=f"Langevin NVT 300 K, {n_steps} steps of 0.5 fs from a 4x4x4 grid, seed {args.seed}")
    return out


def _shell_pairs(atoms: Atoms, n_shells: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """(i, j) index arrays of the neighbour pairs in each of the first n_shells bcc shells."""
    d = atoms.get_all_distances(mic=True)
    radii = np.unique(np.round(d[d > 1e-6], 3))[:n_shells]
    return [np.nonzero(np.isclose(d, r, atol=2e-3)) for r in radii]


def _correlation_error(symbols: np.ndarray, shells, n_elem: int) -> float:
    """Squared deviation of the pair fractions per shell from the random alloy (1/n_elem^2 each)."""
    err = 0.0
    for i, j in shells:
        counts = np.bincount(symbols[i] * n_elem + symbols[j], minlength=n_elem**2) / len(i)
        err += float(((counts - 1.0 / n_elem**2) ** 2).sum())
    return err


def make_nbmotaw(args) -> Atoms:
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    elements = ["Nb", "Mo", "Ta", "W"]
    a = float(np.mean([reference_states[atomic_numbers[s]]["a"] for s in elements]))
    atoms = bulk("W", "bcc", a=a, cubic=True).repeat(4)
    rng = np.random.default_rng(args.seed)
    species = np.repeat(np.arange(4), len(atoms) // 4)
    rng.shuffle(species)
    shells = _shell_pairs(atoms)
    err = _correlation_error(species, shells, 4)
    start = err
    for _ in range(args.swaps):
        i, j = rng.integers(len(atoms), size=2)
        if species[i] == species[j]:
            continue
        species[[i, j]] = species[[j, i]]
        new = _correlation_error(species, shells, 4)
        if new <= err:
            err = new
        else:
            species[[i, j]] = species[[j, i]]
    atoms.symbols = [elements[k] for k in species]
    print(f"{atoms.get_chemical_formula()} bcc, a = {a:.4f} A (Vegard), {len(atoms)} atoms; pair-correlation "
          f"error of shells 1-2: {start:.2e} random -> {err:.2e}")
    atoms.info.update(source="cace_calc scripts/make_structures.py nbmotaw",
                      note=f"SQS-like (shells 1-2), a = {a:.4f} A Vegard, unrelaxed, seed {args.seed}")
    return atoms


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["water", "nbmotaw"])
    p.add_argument("--out", required=True, help="extended XYZ file to write")
    p.add_argument("--model", default="water", help="water: model for the MD (default: pretrained water)")
    p.add_argument("--hot-ps", type=float, default=0.1, help="water: ps with friction 0.1/fs (default 0.1)")
    p.add_argument("--ps", type=float, default=0.4, help="water: ps with friction 0.01/fs after that (default 0.4)")
    p.add_argument("--swaps", type=int, default=20000, help="nbmotaw: random swaps tried (default 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    import ase.io

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    atoms = make_water(args) if args.kind == "water" else make_nbmotaw(args)
    ase.io.write(args.out, atoms, format="extxyz")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
