"""LAMMPS pair_style cace: time per MD step against MPI ranks and system size, next to the ASE
calculator's time per energy+forces call on the same structure, same dtype and threads.

Systems: liquid water, repeats of 64 H2O (192, 1,536, 12,288, 98,304 atoms), NVE from 300 K.
Each (size, ranks) case is one LAMMPS run (``cace-calc lammps run``): ``--warmup`` steps, then
``--steps`` timed steps; the time per step is LAMMPS' loop time of the timed run divided by its
steps. Torch runs cores / ranks threads per rank in LAMMPS (CACE_NUM_THREADS; LAMMPS' own
OpenMP threads 1) and torch's default (the cores) for ASE. The memory column is LAMMPS' own per rank (atoms, ghosts), not torch's.

    python benchmarks/lammps_benchmark.py                                 # the full table (long)
    python benchmarks/lammps_benchmark.py --sizes 192 1536 --ranks 1 2 --steps 5
    python benchmarks/lammps_benchmark.py --sizes 192 --ranks 1 --steps 1 --warmup 0 --no-ase   # smoke

Writes ``benchmarks/results/<label>.json`` and prints a table. Run it on an otherwise idle
machine: the numbers mean nothing while another job shares the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("CACE_SHARED", HERE.parents[1] / "shared")).resolve()
WATER_REPEATS = {192: 1, 1536: 2, 12288: 4, 98304: 8}

INPUT = """units metal
atom_style atomic
read_data water.data
pair_style cace {model} dtype {dtype} device {device} compile {compile}
pair_coeff * * H O
neighbor 1.0 bin
timestep 0.0005
velocity all create 300 4928459 mom yes loop geom
fix nve all nve
thermo {steps}
run {warmup}
run {steps}
info memory
"""


def water(n_atoms: int):
    """Liquid water of ``n_atoms`` atoms (repeats of 64 H2O)."""
    import ase.io

    try:
        from cace_calc.data import structure

        atoms = structure("water-64")
    except (ImportError, KeyError):
        atoms = ase.io.read(SHARED / "reference" / "liquid-64.xyz")
    if n_atoms not in WATER_REPEATS:
        raise SystemExit(f"--sizes: water sizes are {sorted(WATER_REPEATS)}, got {n_atoms}")
    atoms = atoms.repeat(WATER_REPEATS[n_atoms])
    atoms.wrap()
    return atoms


def time_lammps(atoms, ranks: int, *, model: str, dtype: str, device: str, compile: bool, steps: int,
                warmup: int) -> dict:
    import ase.io

    from cace_calc.lammps import run_lammps

    with tempfile.TemporaryDirectory() as tmp:
        ase.io.write(Path(tmp) / "water.data", atoms, format="lammps-data", specorder=["H", "O"], masses=True)
        (Path(tmp) / "in.bench").write_text(INPUT.format(model=model, dtype=dtype, device=device, steps=steps,
                                                         warmup=warmup, compile="yes" if compile else "no"))
        start = time.perf_counter()
        proc = run_lammps(Path(tmp) / "in.bench", np=ranks, capture=True, args=("-log", "none"))
        wall = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"LAMMPS failed on {len(atoms)} atoms, {ranks} ranks:\n{out[-3000:]}")
    loops = re.findall(r"Loop time of (\S+) on \d+ procs for (\d+) steps", out)
    loop_s, n = float(loops[-1][0]), int(loops[-1][1])
    mem = re.findall(r"Per MPI rank memory allocation \(min/avg/max\) = \S+ \| \S+ \| (\S+) Mbytes", out)
    ghosts = re.findall(r"Nghost:\s+(\S+) ave", out)
    rss = re.findall(r"Maximum resident set size:\s+(\S+) Mbyte", out)  # rank 0's peak, torch included
    return {"ms_per_step": 1e3 * loop_s / max(n, 1), "wall_s": wall, "lammps_mbytes_per_rank": float(mem[-1]) if mem else None,
            "peak_rss_mbytes_rank0": float(rss[-1]) if rss else None,
            "ghosts_per_rank": float(ghosts[-1]) if ghosts else None}


def time_ase(atoms, *, model: str, dtype: str, device: str, compile: bool, repeats: int) -> dict:
    import resource

    import torch

    from cace_calc import CACECalculator

    calc = CACECalculator(model, device=device, dtype=dtype, compile=compile)
    atoms = atoms.copy()
    rng = np.random.default_rng(0)
    times = []
    for i in range(repeats + 1):
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        atoms.calc = calc
        start = time.perf_counter()
        atoms.get_forces()
        if i:  # the first call warms up
            times.append(time.perf_counter() - start)
    # peak RSS of this process so far (ASE runs before the LAMMPS runs, which are subprocesses)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms_per_call": 1e3 * float(np.median(times)), "threads": torch.get_num_threads(),
            "peak_rss_mbytes": peak}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=sorted(WATER_REPEATS))
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default="water")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10, help="timed MD steps per LAMMPS run")
    p.add_argument("--warmup", type=int, default=2, help="MD steps before the timed ones")
    p.add_argument("--no-ase", action="store_true", help="skip the ASE calculator's timing")
    p.add_argument("--compile", action="store_true", help="compiled kernels in both (pair_style ... compile yes)")
    p.add_argument("--label", default="lammps-cpu")
    args = p.parse_args(argv)

    rows = []
    for n in args.sizes:
        atoms = water(n)
        row = {"atoms": len(atoms)}
        if not args.no_ase:
            row["ase"] = time_ase(atoms, model=args.model, dtype=args.dtype, device=args.device,
                                  compile=args.compile, repeats=max(1, min(args.steps, 5)))
        for ranks in args.ranks:
            row[f"lammps_np{ranks}"] = time_lammps(atoms, ranks, model=args.model, dtype=args.dtype,
                                                   device=args.device, compile=args.compile, steps=args.steps,
                                                   warmup=args.warmup)
        rows.append(row)
        cells = [f"{len(atoms):>7d} atoms"]
        if "ase" in row:
            cells.append(f"ASE {row['ase']['ms_per_call']:10.1f} ms ({row['ase']['peak_rss_mbytes']:.0f} MB)")
        cells += [f"np {r}: {row[f'lammps_np{r}']['ms_per_step']:10.1f} ms/step "
                  f"({row[f'lammps_np{r}']['ghosts_per_rank']:.0f} ghosts/rank, "
                  f"{row[f'lammps_np{r}']['peak_rss_mbytes_rank0'] or float('nan'):.0f} MB)" for r in args.ranks]
        print("  ".join(cells), flush=True)

    result = {"label": args.label, "model": args.model, "dtype": args.dtype, "device": args.device,
              "compile": args.compile,
              "steps": args.steps, "warmup": args.warmup, "cpus": os.cpu_count(), "machine": platform.processor()
              or platform.machine(), "python": sys.version.split()[0], "rows": rows}
    out = HERE / "results" / f"{args.label}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
