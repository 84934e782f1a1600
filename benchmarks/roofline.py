"""Roofline of an energy+forces call: the work and the memory traffic of each of the model's
kernels, against what this machine can do at most, and the fraction of that bound each achieves.

1. Machine: the peak floating-point rate (a large float32 matrix product, torch.mm 2048 x 2048)
   and the memory bandwidth (float32 a + b into c over 3 x 256 MB, bytes read and written),
   both measured here with the same threads as the model; both are practical peaks, not data
   sheet numbers.
2. Kernels: one eager call of the model records the inputs of each kernel, as the model calls
   it: the edge basis (per edge tile), the edge sums (per layer), the density (the receiver's
   element factor and the radial mixing), the symmetriser, the Bchi weights (message-passing
   layers) and the readout. Each is then timed
   alone, forward and backward (the gradient of its outputs with respect to those of its inputs
   that depend on the edge vectors: what the forces need; the parameters are frozen), in the form the model runs it (``--compiled``: the
   torch.compile kernels of ``CACE.use_compiled_kernels``).
3. Counts, on the eager forward and backward of each kernel (a dispatch hook over torch's
   operations): floating-point operations (a matrix product 2 m n k; an elementwise or
   reduction operation one per element of its largest operand; sin, cos, exp, sqrt and
   division count one), and the bytes the kernel must move at least: its inputs and outputs
   once (backward: the output gradient, the saved inputs and the input gradients). The roofline
   time is max(FLOPs / peak, bytes / bandwidth); the fraction is that over the measured time.
   "bytes op by op" is what the kernel moves when every torch operation reads and writes
   memory (eager): fusing the kernel can save the difference.

    python benchmarks/roofline.py --model nbmotaw --atoms 2000 --compiled
    python benchmarks/roofline.py --model water --atoms 1536 --compiled

Writes ``benchmarks/results/roofline-<model>.json`` and prints a table. Run it on an otherwise
idle machine: times mean nothing while another job shares the cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MATMUL = {"mm", "bmm", "addmm", "baddbmm", "addbmm"}
NO_FLOPS = {"copy_", "clone", "cat", "stack", "index_select", "index_copy_", "index", "gather", "zeros_like",
            "zeros", "empty", "empty_like", "new_zeros", "new_empty", "fill_", "zero_", "expand", "view",
            "_unsafe_view", "reshape", "permute", "transpose", "t", "unsqueeze", "squeeze", "select", "slice",
            "split", "split_with_sizes", "unbind", "as_strided", "detach", "alias", "contiguous", "_to_copy",
            "lift_fresh", "full", "ones_like", "scalar_tensor", "new_empty_strided", "empty_strided",
            "index_put_", "unsafe_split", "clamp_min", "where", "lt", "gt", "le", "ge", "eq", "ne"}


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for y in x:
            yield from _tensors(y)
    elif isinstance(x, dict):
        for y in x.values():
            yield from _tensors(y)


class OpCounter(TorchDispatchMode):
    """Floating-point operations and bytes (each operation's operands and results) of the torch
    operations run inside it."""

    def __init__(self):
        super().__init__()
        self.flops = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        ins = [t for t in _tensors(args) if t.is_floating_point()]
        outs = [t for t in _tensors(out) if t.is_floating_point()]
        if name in MATMUL:
            a, b = (args[1], args[2]) if name in {"addmm", "baddbmm", "addbmm"} else (args[0], args[1])
            self.flops += 2 * a.numel() * b.shape[-1]
        elif name not in NO_FLOPS and (ins or outs):
            self.flops += max(t.numel() for t in ins + outs)
        views = name in {"view", "_unsafe_view", "reshape", "permute", "transpose", "t", "unsqueeze", "squeeze",
                         "select", "slice", "expand", "as_strided", "alias", "detach", "split", "unbind",
                         "split_with_sizes", "unsafe_split"}
        if not views:
            self.bytes += sum(t.numel() * t.element_size() for t in ins + outs)
        return out


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def machine_peaks(repeat: int) -> dict:
    """Practical peaks with torch's threads, float32: GFLOP/s of a 2048 x 2048 matrix product and
    GB/s of c = a + b over 64 Mi elements (12 bytes per element moved)."""
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    ms = median_ms(lambda: torch.mm(a, b), repeat)
    n = 1 << 26
    x, y, z = torch.randn(n), torch.randn(n), torch.empty(n)
    ms_bw = median_ms(lambda: torch.add(x, y, out=z), repeat)
    return {"gflops": 2 * 2048**3 / ms / 1e6, "gbytes_per_s": 12 * n / ms_bw / 1e6}


class Recorder:
    """Records (kernel name, eager function, compiled function, inputs) of each kernel call
    of one model call."""

    def __init__(self, model):
        import cace_calc.model as model_module

        self.model, self.calls = model, []
        self._module, self._edge_sums = model_module, model_module.edge_sums
        self.layer = 0

    def _record(self, name, eager, compiled, args):
        # an input needs a gradient when it depends on the edge vectors (the parameters are frozen)
        self.calls.append((name, eager, compiled, [a.detach().clone().requires_grad_(a.requires_grad)
                                                   if isinstance(a, torch.Tensor) else a for a in args]))

    def __enter__(self):
        m, rec = self.model, self
        compiled = m.__dict__.copy()
        self._saved = {k: compiled.get(k) for k in ("_compiled_edge_basis", "_compiled_symmetrizer",
                                                     "_compiled_density")}
        basis_c = compiled.get("_compiled_edge_basis", m.edge_basis)
        sym_c = compiled.get("_compiled_symmetrizer", m.symmetrizer)
        density_c = compiled.get("_compiled_density", m._density)

        def basis(v):
            rec._record("edge basis", m.edge_basis, basis_c, [v])
            return m.edge_basis(v)

        def sums(weights, senders, y, r, l_blocks, compiled=False):
            def eager(w, *tiles, _n=len(y)):
                return rec._edge_sums(w, senders, list(tiles[:_n]), list(tiles[_n:]), l_blocks, compiled=False)

            def comp(w, *tiles, _n=len(y)):
                return rec._edge_sums(w, senders, list(tiles[:_n]), list(tiles[_n:]), l_blocks, compiled=True)
            uses_compiled = rec._saved["_compiled_edge_basis"] is not None
            rec._record(f"edge sums, layer {rec.layer}", eager, comp if uses_compiled else eager, [weights, *y, *r])
            return rec._edge_sums(weights, senders, y, r, l_blocks, compiled=False)

        def sym(a):
            rec._record(f"symmetriser, layer {rec.layer}", m.symmetrizer, sym_c, [a])
            rec.layer += 1
            return m.symmetrizer(a)

        def density(sums, theta_r):
            rec._record(f"density, layer {rec.layer}", m._density, density_c, [sums, theta_r])
            return m._density(sums, theta_r)

        m.__dict__["_compiled_edge_basis"] = basis
        m.__dict__["_compiled_density"] = density
        m.__dict__["_compiled_symmetrizer"] = sym
        self._module.edge_sums = sums
        self._hooks = [m.readout.register_forward_pre_hook(
            lambda mod, args: rec._record("readout", mod, mod, list(args)))]
        for t, b in enumerate(m.bchi):
            self._hooks.append(b.register_forward_pre_hook(
                lambda mod, args, _t=t: rec._record(f"Bchi weights, layer {_t}", mod, mod, list(args))))
        return self

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        self._module.edge_sums = self._edge_sums
        for k, v in self._saved.items():
            if v is None:
                self.model.__dict__.pop(k, None)
            else:
                self.model.__dict__[k] = v


def kernel_rows(calls, peaks, repeat: int) -> list[dict]:
    """One row per kernel (edge tiles of the edge basis summed): counts and times, forward and
    backward."""
    rows: dict[str, dict] = {}
    for name, eager, compiled, args in calls:
        inputs = args
        with_grad = [a for a in inputs if isinstance(a, torch.Tensor) and a.requires_grad]

        def forward(fn=compiled):
            with torch.no_grad():
                return fn(*inputs)

        def outputs(fn):
            out = fn(*inputs)
            return [t for t in _tensors(out) if t.requires_grad]

        with OpCounter() as fc:
            outs = outputs(eager)
        grads = [torch.randn_like(o) for o in outs]
        with OpCounter() as bc:
            got = torch.autograd.grad(outs, with_grad, grads, allow_unused=True)
        fwd_bytes = nbytes(a for a in inputs if isinstance(a, torch.Tensor)) + nbytes(outs)
        bwd_bytes = nbytes(grads) + nbytes(a for a in inputs if isinstance(a, torch.Tensor)) + nbytes(
            g for g in got if g is not None)

        ms_f = median_ms(forward, repeat)

        def backward():
            out = outputs(compiled)
            t = time.perf_counter()
            torch.autograd.grad(out, with_grad, grads, allow_unused=True)
            return time.perf_counter() - t

        backward()
        ms_b = 1e3 * statistics.median(backward() for _ in range(repeat))
        key = name.split(",")[0] if name == "edge basis" else name
        row = rows.setdefault(key, {"kernel": key, "fwd_flops": 0, "fwd_bytes": 0, "fwd_bytes_op_by_op": 0,
                                    "fwd_ms": 0.0, "bwd_flops": 0, "bwd_bytes": 0, "bwd_bytes_op_by_op": 0,
                                    "bwd_ms": 0.0})
        row["fwd_flops"] += fc.flops
        row["fwd_bytes"] += fwd_bytes
        row["fwd_bytes_op_by_op"] += fc.bytes
        row["fwd_ms"] += ms_f
        row["bwd_flops"] += bc.flops
        row["bwd_bytes"] += bwd_bytes
        row["bwd_bytes_op_by_op"] += bc.bytes
        row["bwd_ms"] += ms_b
    for row in rows.values():
        for part in ("fwd", "bwd"):
            bound_ms = max(row[f"{part}_flops"] / peaks["gflops"] / 1e6, row[f"{part}_bytes"] / peaks["gbytes_per_s"] / 1e6)
            row[f"{part}_bound_ms"] = bound_ms
            row[f"{part}_fraction_of_bound"] = bound_ms / row[f"{part}_ms"] if row[f"{part}_ms"] else 0.0
            row[f"{part}_intensity"] = row[f"{part}_flops"] / max(row[f"{part}_bytes"], 1)
    return list(rows.values())


def markdown(result: dict) -> str:
    """The kernel table of a roofline JSON file as Markdown (per atom: MFLOP and kB)."""
    n, call = result["atoms"], result["call_ms"]
    lines = ["| kernel | pass | MFLOP/atom | kB/atom | FLOP/byte | ms | share of call | roofline ms | of roofline |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["kernels"]:
        for part, label in (("fwd", "forward"), ("bwd", "backward")):
            lines.append(f"| {r['kernel']} | {label} | {r[f'{part}_flops'] / n / 1e6:.3f} | "
                         f"{r[f'{part}_bytes'] / n / 1e3:.1f} | {r[f'{part}_intensity']:.1f} | {r[f'{part}_ms']:.2f} | "
                         f"{r[f'{part}_ms'] / call:.0%} | {r[f'{part}_bound_ms']:.2f} | {r[f'{part}_fraction_of_bound']:.0%} |")
    kernels = sum(r["fwd_ms"] + r["bwd_ms"] for r in result["kernels"])
    lines.append(f"| the rest | | | | | {call - kernels:.1f} | {(call - kernels) / call:.0%} | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="nbmotaw")
    p.add_argument("--atoms", type=int, default=2000)
    p.add_argument("--compiled", action="store_true", help="time the compiled kernels (as compile=True runs them)")
    p.add_argument("--repeat", type=int, default=21)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="JSON file (default benchmarks/results/roofline-<model>.json)")
    p.add_argument("--markdown", metavar="JSON", help="print the table of a written JSON file as Markdown and stop")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    torch.set_num_threads(args.threads)
    from md_step import structure

    from cace_calc.checkpoint import load_model
    from cace_calc.graph import build_graph

    atoms = structure(args.model, args.atoms)
    model = load_model(args.model, dtype=torch.float32)
    if args.compiled:
        model.use_compiled_kernels()
    graph = build_graph([atoms], model.config.elements, model.cutoff)
    peaks = machine_peaks(args.repeat)
    print(f"machine ({args.threads} threads, float32): {peaks['gflops']:.1f} GFLOP/s (matrix product), "
          f"{peaks['gbytes_per_s']:.1f} GB/s (a + b)")
    call_ms = median_ms(lambda: model(graph, forces=True), args.repeat)
    with OpCounter() as whole:  # on an eager copy: a dispatch mode around compiled code slows it for good
        load_model(args.model, dtype=torch.float32)(graph, forces=True)
    with Recorder(model) as rec:
        model(graph, forces=True)

    rows = kernel_rows(rec.calls, peaks, args.repeat)
    kernels_ms = sum(r["fwd_ms"] + r["bwd_ms"] for r in rows)
    print(f"{args.model}, {len(atoms)} atoms, {'compiled' if args.compiled else 'eager'}: energy+forces call "
          f"{call_ms:.1f} ms; {whole.flops / len(atoms) / 1e6:.2f} MFLOP per atom in all "
          f"({whole.flops / call_ms / 1e6:.1f} GFLOP/s)")
    print(f"{'kernel':24s} {'pass':4s} {'MFLOP/atom':>10s} {'kB/atom':>8s} {'kB/atom op-by-op':>16s} {'FLOP/B':>6s} "
          f"{'ms':>7s} {'share':>6s} {'bound ms':>8s} {'of bound':>8s}")
    for r in rows:
        for part in ("fwd", "bwd"):
            print(f"{r['kernel']:24s} {part:4s} {r[f'{part}_flops'] / len(atoms) / 1e6:10.3f} "
                  f"{r[f'{part}_bytes'] / len(atoms) / 1e3:8.2f} {r[f'{part}_bytes_op_by_op'] / len(atoms) / 1e3:16.2f} "
                  f"{r[f'{part}_intensity']:6.2f} {r[f'{part}_ms']:7.2f} {r[f'{part}_ms'] / call_ms:6.1%} "
                  f"{r[f'{part}_bound_ms']:8.3f} {r[f'{part}_fraction_of_bound']:8.1%}")
    print(f"the kernels alone: {kernels_ms:.1f} ms of the call's {call_ms:.1f} ms (the rest: neighbour slots, "
          f"gathers and scatters of forces, the ZBL core, Python)")
    out = Path(args.out or HERE / "results" / f"roofline-{args.model}.json")
    out.write_text(json.dumps({"model": args.model, "atoms": len(atoms), "compiled": args.compiled,
                               "threads": args.threads, "torch": torch.__version__, "machine": peaks,
                               "call_ms": call_ms, "flops_per_call": whole.flops, "kernels": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
