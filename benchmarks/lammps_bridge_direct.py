"""The LAMMPS bridge's own cost, without LAMMPS: ``PairCACE.compute`` on one pretend rank, fed the
pairs (cutoff + 1 A skin) and ghost atoms that LAMMPS would hand it, against the ASE calculator on
the same liquid-water box (same dtype and threads). With ``--profile``, a cProfile of the bridge.

    python benchmarks/lammps_bridge_direct.py --repeat 4          # 12,288 atoms
    python benchmarks/lammps_bridge_direct.py --repeat 2 --profile

Measured 2026-12-07 (2 cores, float32, 2 threads): 1,536 atoms 135 ms against ASE's 140 (0.97x),
12,288 atoms 1,117 against 1,115 ms (1.00x); `pair_style cace water` on 1 rank takes 1.40 s per
step at 12,288 atoms (LAMMPS' Pair section): the one-rank overhead is not in this Python code.
Uses the helpers of tests/lammps/test_bridge.py (pretend ranks).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=2, help="copies of the 64-molecule box per side (2: 1,536 atoms)")
    p.add_argument("--calls", type=int, default=7)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    sys.path[:0] = [str(ROOT / "tests" / "lammps"), str(ROOT / "tests")]
    from ase.io import read
    from test_bridge import PretendComm, ghost_images

    from cace_calc import CACECalculator
    from cace_calc.data import __file__ as data_init
    from cace_calc.graph import neighbour_pairs
    from cace_calc.lammps.bridge import PairCACE

    atoms = read(Path(data_init).parent / "water-64.xyz").repeat(args.repeat)
    pair = PairCACE("water", args.dtype, "cpu")
    pair.set_elements(["H", "O"])
    x, owner = ghost_images(atoms, np.ones(len(atoms), bool), pair.ghost_cutoff + 1.0)
    nlocal, nall = len(atoms), len(x)
    comm = PretendComm([owner], [nlocal])
    pair.set_communicator(comm.communicator(0), comm.reducer(0))
    types = np.array([1 if s == "H" else 2 for s in atoms.get_chemical_symbols()])[owner].astype(np.int32)
    i, j, _ = neighbour_pairs(torch.from_numpy(x), torch.zeros(3, 3, dtype=torch.float64), (False,) * 3,
                              pair.cutoff + 1.0)
    i, j = i[i < nlocal].numpy().astype(np.int32), j[i < nlocal].numpy().astype(np.int32)

    def bridge():
        f = np.zeros((nall, 3))
        pair.compute(nlocal, nall, memoryview(x.copy()), memoryview(types), memoryview(i), memoryview(j),
                     memoryview(f))

    calc = CACECalculator("water", dtype=args.dtype, device="cpu")

    def ase_call():
        calc.results = {}
        calc.calculate(atoms, ["energy", "forces"])

    tb, ta = [], []
    for _ in range(args.calls):  # interleaved
        t = time.perf_counter()
        bridge()
        tb.append(time.perf_counter() - t)
        t = time.perf_counter()
        ase_call()
        ta.append(time.perf_counter() - t)
    b, a = statistics.median(tb), statistics.median(ta)
    print(f"{nlocal} atoms ({nall} with ghosts, {len(i)} pairs), {args.dtype}, {torch.get_num_threads()} threads: "
          f"bridge {1e3 * b:.1f} ms, ASE calculator {1e3 * a:.1f} ms, ratio {b / a:.2f}")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            bridge()
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
