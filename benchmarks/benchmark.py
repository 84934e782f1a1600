"""Speed and memory of CACE inference: time per energy+forces(+stress) call, atom-steps per
second and peak memory, against system size, on CPU and CUDA, in float32 and float64.

Systems: liquid water (repeats of ../shared/reference/liquid-64.xyz: 192, 1,536, 12,288, 98,304
atoms) and a random bcc NbMoTaW solid solution of similar sizes. Models: the published CACE
water model (converted with our converter from ../shared/reference, never shipped) and the
pretrained ``water`` and ``nbmotaw`` models when installed.

Each case runs in its own subprocess so that its peak memory (CPU: max RSS; CUDA: peak
allocated) is its own. The neighbour list is timed apart from the model call.

    python benchmarks/benchmark.py                      # the full table (long on a CPU)
    python benchmarks/benchmark.py --sizes 192 1536 --dtypes float32 --devices cpu --repeats 7
    CACE_SHARED=/path/to/shared python benchmarks/benchmark.py ...   # data not beside the checkout

Writes ``benchmarks/results/<label>.json`` (all numbers), prints a table and saves
``benchmarks/results/<label>.png`` (time per step against atoms, log-log).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# the shared data folder beside the checkout; CACE_SHARED points elsewhere (a machine where it is not beside)
SHARED = Path(os.environ.get("CACE_SHARED", HERE.parents[1] / "shared")).resolve()
WATER_REPEATS = {192: 1, 1536: 2, 12288: 4, 98304: 8}


def water(n_atoms: int):
    """Liquid water: liquid-64.xyz repeated k x k x k (192 k^3 atoms)."""
    import ase.io

    k = WATER_REPEATS.get(n_atoms) or round((n_atoms / 192) ** (1 / 3))
    return ase.io.read(SHARED / "reference" / "liquid-64.xyz").repeat(k)


def nbmotaw(n_atoms: int, seed: int = 0):
    """A random equimolar bcc Nb-Mo-Ta-W solid solution (a = 3.22 A) with about ``n_atoms`` atoms."""
    from ase.build import bulk

    k = max(1, round((n_atoms / 2) ** (1 / 3)))
    atoms = bulk("W", "bcc", a=3.22, cubic=True).repeat(k)
    rng = np.random.default_rng(seed)
    atoms.numbers = rng.permutation(np.resize([41, 42, 73, 74], len(atoms)))
    atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
    return atoms


def model_path(name: str, tmp: Path) -> str:
    """A model file for a benchmark model name."""
    if name == "published-water":
        from cace_calc import convert_original, save_model

        ref = SHARED / "reference"
        path = tmp / "published-water.pt"
        if not path.exists():
            save_model(convert_original(ref / "cace_water_cacefit.pth", e0=ref / "cace_water_cacefit_e0.json"), path)
        return str(path)
    return name


SYSTEM_OF = {"published-water": "water", "water": "water", "nbmotaw": "nbmotaw"}


def run_case(model: str, system: str, n_atoms: int, device: str, dtype: str, repeats: int, stress: bool,
             compiled: bool = False) -> dict:
    """Time one case in this process; returns a dict of results."""
    import resource

    import torch

    from cace_calc import load_model
    from cace_calc.graph import build_graph

    dev = torch.device(device)
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    atoms = water(n_atoms) if system == "water" else nbmotaw(n_atoms)
    net = load_model(model, device=dev, dtype=torch_dtype)
    if compiled:
        net.use_compiled_kernels()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def nl():
        t = time.perf_counter()
        g = build_graph([atoms], net.config.elements, net.cutoff, device=dev)
        sync()
        return g, time.perf_counter() - t

    graph, _ = nl()
    t_first = time.perf_counter()
    net(graph, forces=True, stress=stress)  # warm-up (compiles when compiled=True)
    sync()
    t_first = time.perf_counter() - t_first
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, nl_times = [], []
    for _ in range(repeats):
        graph, t_nl = nl()
        nl_times.append(t_nl)
        t = time.perf_counter()
        out = net(graph, forces=True, stress=stress)
        sync()
        times.append(time.perf_counter() - t)
    assert np.isfinite(out["energy"].cpu().numpy()).all()
    med = float(np.median(times))
    res = {"model": model, "system": system, "n_atoms": len(atoms), "n_edges": int(graph.receivers.shape[0]),
           "device": device, "dtype": dtype, "stress": stress, "compiled": compiled, "repeats": repeats,
           "first_call_s": t_first,
           "median_s": med, "min_s": float(np.min(times)), "max_s": float(np.max(times)),
           "neighbour_list_median_s": float(np.median(nl_times)), "atom_steps_per_s": len(atoms) / med,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}
    if dev.type == "cuda":
        res["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    return res


def machine() -> dict:
    import torch

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def table(results: list[dict]) -> str:
    head = (f"{'model':16s} {'system':8s} {'atoms':>7s} {'device':6s} {'dtype':8s} {'stress':6s} {'comp':4s} "
            f"{'median ms':>10s} {'spread ms':>14s} {'NL ms':>8s} {'atom-steps/s':>13s} {'peak GB':>8s}")
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['model']:16s} {r['system']:8s} {r['n_atoms']:7d} {r['device']:6s} {r['dtype']:8s} "
                         f"{'yes' if r['stress'] else 'no':6s} {'yes' if r.get('compiled') else 'no':4s} "
                         f"failed: {r['error']}")
            continue
        peak = r.get("peak_cuda_gb", r["peak_rss_gb"])
        lines.append(
            f"{r['model']:16s} {r['system']:8s} {r['n_atoms']:7d} {r['device']:6s} {r['dtype']:8s} "
            f"{'yes' if r['stress'] else 'no':6s} {'yes' if r.get('compiled') else 'no':4s} {1e3 * r['median_s']:10.1f} "
            f"{1e3 * r['min_s']:6.1f}-{1e3 * r['max_s']:<7.1f} {1e3 * r['neighbour_list_median_s']:8.1f} "
            f"{r['atom_steps_per_s']:13.3g} {peak:8.2f}")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    def key_of(r):
        return r["model"], r["device"], r["dtype"], r["stress"], r.get("compiled", False)

    for key in sorted({key_of(r) for r in results if "error" not in r}):
        rows = sorted((r for r in results if "error" not in r and key_of(r) == key), key=lambda r: r["n_atoms"])
        label = f"{key[0]} {key[1]} {key[2]}{' +stress' if key[3] else ''}{' compiled' if key[4] else ''}"
        ax.loglog([r["n_atoms"] for r in rows], [1e3 * r["median_s"] for r in rows], "o-", label=label)
    ax.set_xlabel("atoms")
    ax.set_ylabel("time per energy+forces call (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["published-water", "water", "nbmotaw"])
    p.add_argument("--sizes", nargs="+", type=int, default=[192, 1536, 12288, 98304])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--stress", action="store_true", help="also time energy+forces+stress")
    p.add_argument("--compiled", action="store_true", help="also time the compiled fast path (use_compiled_kernels)")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per case (fewer for the largest)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--label", default=None, help="results file name (default: the device)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case as JSON
    args = p.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.case:
        c = json.loads(args.case)
        print("RESULT " + json.dumps(run_case(**c)))
        return 0

    import torch

    from cace_calc import available_models

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if name != "published-water" and name not in available_models():
                print(f"skipping {name}: not installed as a pretrained model", file=sys.stderr)
                continue
            path = model_path(name, Path(tmp))
            system = SYSTEM_OF.get(name, "water")
            for device in devices:
                for dtype in args.dtypes:
                    for stress, compiled in [(s, c) for s in ([False, True] if args.stress else [False])
                                             for c in ([False, True] if args.compiled else [False])]:
                        for n in args.sizes:
                            repeats = args.repeats if n <= 20000 else max(3, args.repeats // 2)
                            case = {"model": path, "system": system, "n_atoms": n, "device": device,
                                    "dtype": dtype, "repeats": repeats, "stress": stress, "compiled": compiled}
                            cmd = [sys.executable, __file__, "--case", json.dumps(case)]
                            if args.threads:
                                cmd += ["--threads", str(args.threads)]
                            try:
                                proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=args.timeout)
                                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                                if lines:
                                    r = json.loads(lines[-1][7:])
                                else:
                                    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                                    r = {**case, "error": err if proc.returncode > 0 else f"killed ({proc.returncode}): out of memory?"}
                            except subprocess.TimeoutExpired:
                                r = {**case, "error": f"timed out after {args.timeout:.0f} s"}
                            r["model"] = name
                            results.append(r)
                            print(table([r]).splitlines()[-1], flush=True)
                            if "error" in r:
                                break  # larger sizes of this series will not do better
    label = args.label or ("cuda" if "cuda" in devices else "cpu")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    with open(out / f"{label}.json", "w") as fh:
        json.dump({"machine": machine(), "date": time.strftime("%Y-%m-%d"), "results": results}, fh, indent=1)
    print()
    print(table(results))
    plot(results, out / f"{label}.png")
    print(f"\nwrote {out / (label + '.json')} and {out / (label + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
