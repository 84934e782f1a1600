"""Fine-tuning options measured (issue 24, item 3): all weights (the default) against the readout
alone (representation frozen), a 10x smaller learning rate for the representation, and replay
of the parent's own data.

  water:   `water` fine-tuned on the first 5 (and 15) frames of ../shared/data/water-dplr (another
           DFT set-up); errors on the last 5 frames. Replay does not apply: the parent's data is
           another set-up (another functional and energy reference), which the user wants to leave.
  nbmotaw: a model trained without them (--parent, e.g. `git show 9c95f02:pretrained/nbmotaw/model.pt`,
           a release trained without the defect cells) fine-tuned on SNAP-labelled point-defect cells of the pure
           elements (python scripts/snap_defect_data.py --set train/test);
           errors on the defect test set (128-atom cells, unseen) and, for what it forgets, on
           its own DFT test split; replay: 600 structures of its DFT training split beside them.

    python scripts/finetune_options.py water --out runs/finetune-options
    python scripts/finetune_options.py nbmotaw --parent before-1b.pt --out runs/finetune-options

Prints a table and writes NAME.json. 2 CPU cores: a few minutes per fit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ase.io
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OPTIONS = {"all weights (default)": {}, "readout only": {"trainable": "readout"},
           "representation lr x0.1": {"representation_lr": 0.1}}


def water_cases(out: Path):
    frames = ase.io.read(SHARED / "data" / "water-dplr" / "water_dplr_train.xyz", ":")
    test = frames[-5:]
    for n in (5, 15):
        path = out / f"water-dplr-first{n}.xyz"
        ase.io.write(path, frames[:n], format="extxyz")
        for label, opts in OPTIONS.items():
            yield f"{n} frames", label, dict(parent="water", data=[path], epochs=100, **opts), {"water-dplr last 5": test}


def nbmotaw_cases(out: Path, parent: str = "nbmotaw"):
    from cace_calc import load_model

    defects = ase.io.read(ROOT / "runs" / "snap" / "defects_train.xyz", ":")
    pure = [a for a in defects if len(set(a.symbols)) == 1]
    path = out / "defects-pure-elements.xyz"
    ase.io.write(path, pure, format="extxyz")
    test = ase.io.read(ROOT / "runs" / "snap" / "defects_test.xyz", ":")
    dft = ase.io.read(SHARED / "data" / "nbmotaw" / "nbmotaw_train.xyz", ":")
    split = load_model(parent).metadata["split"]
    rng = np.random.default_rng(0)
    replay = out / "nbmotaw-replay-600.xyz"
    ase.io.write(replay, [dft[i] for i in rng.choice(split["train"], 600, replace=False)], format="extxyz")
    checks = {"SNAP defect test set": test, "DFT test split": [dft[i] for i in split["test"]]}
    options = dict(OPTIONS, **{"replay 600 DFT structures (weight 0.3)": {"replay": [replay]}})
    for label, opts in options.items():
        yield f"{len(pure)} defect cells", label, dict(parent=parent, data=[path], epochs=10, **opts), checks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=["water", "nbmotaw"])
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parent", default=None, help="the parent model (default: the pretrained one of that name); "
                   "for nbmotaw, a model trained without the defect cells, e.g. `git show 9c95f02:pretrained/nbmotaw/model.pt`")
    args = p.parse_args(argv)
    import torch

    from cace_calc.evaluate import evaluate_structures
    from cace_calc.train.finetune import finetune

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = water_cases(out) if args.name == "water" else nbmotaw_cases(out, args.parent or "nbmotaw")
    rows, parent_done = [], set()
    for size, label, kwargs, checks in cases:
        if kwargs["parent"] not in parent_done:  # the parent itself, once
            parent_done.add(kwargs["parent"])
            errs = {k: evaluate_structures(v, kwargs["parent"], device="cpu").metrics for k, v in checks.items()}
            rows.append({"data": "-", "option": "parent as shipped", "time_s": 0.0, "errors": errs})
        run_dir = out / f"{args.name}-{size.split()[0]}-{label.split()[0]}-{len(rows)}"
        t0 = time.time()
        res = finetune(output=run_dir, device="cpu", log=lambda *a: None, progress=False, **kwargs)
        took = time.time() - t0
        errs = {k: evaluate_structures(v, res.run.model, device="cpu").metrics for k, v in checks.items()}
        rows.append({"data": size, "option": label, "time_s": took, "epochs": res.run.model.metadata.get("epoch"),
                     "errors": errs})
        print(f"{size:18s} {label:40s} {took:6.0f} s  " + "  ".join(
            f"{k}: E {e.get('energy_rmse_mev_per_atom', float('nan')):.2f} meV/atom, "
            f"F {e['forces_rmse_mev_per_a']:.1f} meV/A" for k, e in errs.items()), flush=True)
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
