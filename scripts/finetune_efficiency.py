"""Data efficiency of fine-tuning (issue 24): the pretrained `water` model fine-tuned on the first
1, 2, 5, 10 and 15 frames of ../shared/data/water-dplr (128 H2O, another DFT set-up) against
the same architecture trained from scratch on the same frames, both with default settings;
errors on the last 5 of the 20 frames, which neither sees (nor uses to choose an epoch).

Validation: with n >= 5 frames the fine-tune and the scratch fit hold out 20 % of them to pick
the epoch; with fewer there is nothing to hold out, so the training frames pick it (the
lowest training error).

    python scripts/finetune_efficiency.py --out runs/finetune-efficiency [--sizes 1 2 5 10 15]

Prints a table and writes results.json; 2 CPU cores: a few minutes per fit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ase.io

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "water-dplr" / "water_dplr_train.xyz"
N_TEST = 5


def scratch_recipe(frames: Path, valid: Path | None, out: Path) -> dict:
    """The pretrained water recipe's architecture and schedule, from scratch, with the same
    early stop as fine-tuning."""
    from cace_calc import load_model

    cfg = load_model("water").config.to_dict()
    model = {k: cfg[k] for k in ("cutoff", "cutoff_p", "n_rbf", "n_radial", "l_max", "nu_max", "n_embed",
                                 "embed_receiver", "n_layers", "messages", "readout_hidden", "readout_linear")}
    return {"data": {"train": str(frames), "valid": None if valid is None else str(valid), "valid_fraction": 0.2,
                     "test_fraction": 0.0, "seed": 0},
            "model": model, "e0": "fit",
            "training": {"epochs": 100, "batch_size": 2, "lr": 0.01, "lr_min": 1e-4, "warmup_epochs": 2,
                         "ema_decay": 0.99, "patience": 25, "dtype": "float32", "device": "cpu",
                         "loss": [{"from_epoch": 0, "energy": 1000.0, "forces": 100.0, "stress": 1e4}]},
            "output": str(out)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10, 15])
    args = p.parse_args(argv)
    import torch

    from cace_calc.evaluate import evaluate_structures
    from cace_calc.train import train
    from cace_calc.train.finetune import finetune

    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = ase.io.read(DATA, ":")
    test = frames[-N_TEST:]
    results = []
    quiet = lambda *a: None  # noqa: E731
    for n in args.sizes:
        ase.io.write(out / f"train-{n}.xyz", frames[:n])
        valid = out / f"train-{n}.xyz" if n < 5 else None
        row = {"frames": n}
        t0 = time.time()
        ft = finetune("water", [out / f"train-{n}.xyz"], output=out / f"ft-{n}", device="cpu", valid=valid, log=quiet)
        row["finetune_s"] = time.time() - t0
        row["finetune"] = evaluate_structures(test, ft.run.model, device="cpu").metrics
        t0 = time.time()
        scratch = train(scratch_recipe(out / f"train-{n}.xyz", valid, out / f"scratch-{n}"), log=quiet)
        row["scratch_s"] = time.time() - t0
        row["scratch"] = evaluate_structures(test, scratch.model, device="cpu").metrics
        results.append(row)
        f, s = row["finetune"], row["scratch"]
        print(f"{n:3d} frames: fine-tuned E {f['energy_rmse_mev_per_atom']:.2f} meV/atom, F "
              f"{f['forces_rmse_mev_per_a']:.1f} meV/A ({row['finetune_s']:.0f} s) | from scratch E "
              f"{s['energy_rmse_mev_per_atom']:.2f}, F {s['forces_rmse_mev_per_a']:.1f} ({row['scratch_s']:.0f} s) | "
              f"force error {100 * (1 - f['forces_rmse_mev_per_a'] / s['forces_rmse_mev_per_a']):.0f} % lower",
              flush=True)
    before = evaluate_structures(test, "water", device="cpu").metrics
    (out / "results.json").write_text(json.dumps({"test_frames": N_TEST, "pretrained": before, "runs": results},
                                                 indent=1))
    print(f"pretrained water as it is on the same {N_TEST} frames: E {before['energy_rmse_mev_per_atom']:.0f} "
          f"meV/atom (offset {before['energy_offset_mev_per_atom']:.0f}), F {before['forces_rmse_mev_per_a']:.1f} meV/A")
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
