"""Time and peak memory of repeated calls on a large system under glibc allocator settings.

On Linux, large freed blocks go back to the system and are faulted in again on the next call;
on virtual machines each page fault costs microseconds, so for the largest systems the time per
call depends on the allocator. This prints, for each setting, the time, page faults and system
(kernel) time of every call and the peak RSS, for the published water model (float32).

    python benchmarks/allocator.py                  # 98,304 water atoms, forces and stress
    python benchmarks/allocator.py --atoms 12288 --calls 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "default": {},
    "return large blocks (MALLOC_MMAP_THRESHOLD_=4 MB)": {"MALLOC_MMAP_THRESHOLD_": "4194304"},
    "keep everything (MALLOC_MMAP_MAX_=0, no trim)": {"MALLOC_MMAP_MAX_": "0",
                                                      "MALLOC_TRIM_THRESHOLD_": str(1 << 36)},
}


def run_calls(n_atoms: int, calls: int, stress: bool) -> dict:
    """Calls in this process: per-call seconds, minor page faults and system seconds; peak RSS (GB)."""
    import resource

    import torch

    sys.path.insert(0, str(HERE))
    from benchmark import model_path, water

    from cace_calc import load_model
    from cace_calc.graph import build_graph

    atoms = water(n_atoms)
    net = load_model(model_path("published-water", Path(tempfile.gettempdir())), dtype=torch.float32)
    graph = build_graph([atoms], net.config.elements, net.cutoff)
    rows = []
    for _ in range(calls):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        net(graph, forces=True, stress=stress)
        dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        rows.append({"s": dt, "page_faults": r1.ru_minflt - r0.ru_minflt, "sys_s": r1.ru_stime - r0.ru_stime})
    return {"n_atoms": len(atoms), "calls": rows,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--atoms", type=int, default=98304, help="water atoms (192 k^3)")
    p.add_argument("--calls", type=int, default=4, help="calls per setting (the first one warms up)")
    p.add_argument("--no-stress", action="store_true", help="forces only")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_calls(args.atoms, args.calls, not args.no_stress)))
        return 0
    print(f"{args.atoms} water atoms, published model, float32, forces{'' if args.no_stress else ' and stress'}")
    for name, env in SETTINGS.items():
        cmd = [sys.executable, __file__, "--child", "--atoms", str(args.atoms), "--calls", str(args.calls)]
        if args.no_stress:
            cmd.append("--no-stress")
        out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        calls = "  ".join(f"{c['s']:.1f} s ({c['page_faults'] / 1e6:.2f}M faults, {c['sys_s']:.1f} s sys)"
                          for c in res["calls"])
        print(f"{name}: peak {res['peak_rss_gb']:.1f} GB; calls: {calls}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
