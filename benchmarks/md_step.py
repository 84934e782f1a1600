"""Time per MD step of the ASE route (VelocityVerlet with CACECalculator): the calculator's Verlet
neighbour list (kept between steps, skin 0.5 A) against a list built afresh every step (skin 0),
same structure, dtype and threads, interleaved runs; also the share of a step that the neighbour
list takes when built afresh.

    python benchmarks/md_step.py --model water --atoms 1536 --steps 20 --repeats 5
    python benchmarks/md_step.py --model nbmotaw --atoms 2000 --steps 20 --repeats 5 --compiled

Prints medians (ms per step) and the ratio; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def structure(model: str, n_atoms: int):
    from ase.io import read

    from cace_calc.data import __file__ as data_init

    data = Path(data_init).parent
    if model == "water":
        base = read(data / "water-64.xyz")
        reps = max(1, round((n_atoms / len(base)) ** (1 / 3)))
        return base.repeat(reps)
    from ase.build import bulk

    reps = max(1, round((n_atoms / 2) ** (1 / 3)))
    atoms = bulk("W", "bcc", a=3.24, cubic=True).repeat(reps)
    rng = np.random.default_rng(0)
    atoms.set_chemical_symbols(rng.choice(["Nb", "Mo", "Ta", "W"], len(atoms)).tolist())
    return atoms


def run(atoms, calc, steps: int) -> float:
    """ms per VelocityVerlet step (1 fs) after two warm-up steps."""
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    work = atoms.copy()
    work.calc = calc
    thermalize_momenta(work, temperature_K=600, rng=np.random.default_rng(1))
    dyn = VelocityVerlet(work, timestep=1.0 * units.fs)
    dyn.run(2)
    t0 = time.perf_counter()
    dyn.run(steps)
    return 1e3 * (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="water")
    p.add_argument("--atoms", type=int, default=1536)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--compiled", action="store_true")
    p.add_argument("--out", help="write the numbers to this JSON file")
    args = p.parse_args(argv)
    import torch

    from cace_calc import CACECalculator
    from cace_calc.graph import NeighbourCache, neighbour_pairs

    atoms = structure(args.model, args.atoms)
    kept = CACECalculator(args.model, device="cpu", dtype=args.dtype, compile=args.compiled)
    fresh = CACECalculator(args.model, device="cpu", dtype=args.dtype, compile=args.compiled)
    fresh.neighbours = NeighbourCache(fresh.model.cutoff, skin=0.0)
    times = {"kept": [], "fresh": []}
    for _ in range(args.repeats):  # interleaved: drifts of the machine hit both alike
        times["kept"].append(run(atoms, kept, args.steps))
        times["fresh"].append(run(atoms, fresh, args.steps))
    x = torch.from_numpy(atoms.positions)
    cell = torch.from_numpy(atoms.cell.array)
    nl = []
    for _ in range(7):
        t0 = time.perf_counter()
        neighbour_pairs(x, cell, atoms.pbc, fresh.model.cutoff)
        nl.append(1e3 * (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"model": args.model, "atoms": len(atoms), "dtype": args.dtype, "compiled": args.compiled,
              "threads": torch.get_num_threads(), "steps": args.steps, "ms_per_step": times,
              "median_ms_per_step": med, "speedup": med["fresh"] / med["kept"],
              "neighbour_list_ms": statistics.median(nl), "list_builds_kept": kept.neighbours.builds}
    print(f"{args.model}, {len(atoms)} atoms, {args.dtype}{', compiled' if args.compiled else ''}, "
          f"{torch.get_num_threads()} threads: {med['kept']:.1f} ms/step with the kept list "
          f"({kept.neighbours.builds} builds in {args.repeats * (args.steps + 2) + args.repeats} calls), "
          f"{med['fresh']:.1f} ms/step fresh each step: {result['speedup']:.3f}x; one fresh list "
          f"{result['neighbour_list_ms']:.1f} ms")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
