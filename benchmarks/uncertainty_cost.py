"""What the uncertainty costs: energy + forces alone, with the cheap uncertainty
(``uncertainty=True``) and with every member's forces (``uncertainty="members"``), the same
model and structure, interleaved calls, median of several rounds.

    python benchmarks/uncertainty_cost.py --model water --structure water-64 --repeat 2 --threads 2

Target (issue 22): the cheap uncertainty <= 1.3x energy + forces alone on 1,536 water atoms,
float32, 2 CPU threads. Prints the medians and the ratios; --json writes them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="water")
    p.add_argument("--structure", default="water-64", help="a shipped structure name or a file")
    p.add_argument("--repeat", type=int, default=2, help="cell repeated n x n x n (2: 1,536 water atoms)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--baseline", help="a model without heads (e.g. the stage-1 model, runs/water/model.pt) timed "
                                      "alongside: what the heads cost energy + forces")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    import torch

    from cace_calc import CACECalculator
    from cace_calc.data import list_structures, structure
    from cace_calc.evaluate import read_structures

    torch.set_num_threads(args.threads)
    atoms = structure(args.structure) if args.structure in list_structures() else read_structures(args.structure)[0]
    atoms = atoms.repeat(args.repeat)
    modes = {"energy+forces": False, "+ uncertainty (cheap)": True, "+ members' forces": "members"}
    calcs = {k: CACECalculator(args.model, dtype=args.dtype, device="cpu", uncertainty=v) for k, v in modes.items()}
    if args.baseline:
        calcs["baseline (no heads)"] = CACECalculator(args.baseline, dtype=args.dtype, device="cpu")
    times: dict[str, list[float]] = {k: [] for k in calcs}
    for k, calc in calcs.items():  # warm-up
        calc.calculate_batch([atoms])
    for _ in range(args.rounds):
        for k, calc in calcs.items():
            t0 = time.perf_counter()
            calc.calculate_batch([atoms])
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["energy+forces"])
    n_heads = calcs["energy+forces"].model.n_heads
    print(f"{args.model}, {len(atoms)} atoms, {args.dtype}, {args.threads} threads, {n_heads} heads, "
          f"median of {args.rounds} interleaved rounds:")
    results = {}
    for k, t in times.items():
        med = statistics.median(t)
        results[k] = {"median_ms": 1e3 * med, "ratio": med / base, "all_ms": [1e3 * x for x in t]}
        print(f"  {k:24s} {1e3 * med:9.1f} ms  {med / base:5.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "n_atoms": len(atoms), "dtype": args.dtype, "threads": args.threads,
                       "n_heads": n_heads, "machine": platform.processor() or platform.machine(),
                       "date": time.strftime("%Y-%m-%d"), "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
