"""Could another energy uncertainty rank the errors better than the heads' spread? A probe on a
pretrained model's own splits, for issue 22's target (Spearman of sigma with |error| of the
energy per atom >= 0.4 per structure).

Candidates, each fitted on the training split (a subsample) and scaled on the validation split,
then scored on the test split:

- shipped: the model's own energy sigma (the prediction rigidity below, fitted on the training
  split and the extra training files when the model was trained; the heads' spread for files
  from before it);
- heads: the spread of the readout heads' energies;
- last layer, per structure: prediction rigidity of the readout's last linear layer (its features:
  the last hidden layer, the input rows of the linear term and a constant), sigma^2 = f^T
  (F^T F + lambda I)^-1 f with f the structure's mean feature row and F the training structures'
  (this probe refits it on the training split alone);
- last layer, per atom: the same with every training atom's row (F^T F scaled to structures);
- force sigma: the root mean square of the structure's cheap per-atom force sigmas.

Prints the Spearman correlation on the validation and test splits and the test 2-sigma coverage
for each.

    python scripts/energy_sigma_probe.py nbmotaw
    python scripts/energy_sigma_probe.py water
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def collect(model, images, last_layer_rows):
    """Per structure: |error| of the energy per atom, the heads' sigma per atom, the mean of the
    last-layer rows, atom count and the RMS cheap force sigma; and every atom's row."""
    from cace_calc.train.data import batches, make_frames

    frames = make_frames(images, model.config.elements, model.cutoff, stress=False)
    out = {k: [] for k in ("error", "shipped", "heads", "mean_row", "force_sigma", "atom_rows")}
    captured = {}
    hook = model.readout.register_forward_pre_hook(lambda mod, args: captured.__setitem__("x", args[0].detach()))
    try:
        for batch in batches(frames, 8, shuffle=False):
            res = model(batch.graph, forces=True, uncertainty=True)
            n = batch.n_atoms.to(torch.float64)
            rows = last_layer_rows(captured["x"].to(torch.float64))
            g = batch.graph.batch
            sums = rows.new_zeros(int(batch.graph.n_graphs), rows.shape[1]).index_add_(0, g, rows)
            f2 = res["forces_uncertainty"].detach().to(torch.float64).square()
            rms = (torch.zeros_like(n).index_add_(0, g, f2) / n).sqrt()
            out["error"].append(((res["energy"] - batch.energy) / n).detach().abs().numpy())
            out["shipped"].append((res["energy_uncertainty"] / n).detach().numpy())
            out["heads"].append((res["energy_members"].std(dim=-1, correction=0) / n).detach().numpy())
            out["mean_row"].append((sums / n[:, None]).numpy())
            out["force_sigma"].append(rms.numpy())
            out["atom_rows"].append(rows.numpy())
    finally:
        hook.remove()
    return {k: np.concatenate(v) for k, v in out.items()}


def main(argv=None) -> int:
    import ase.io
    from uncertainty_report import DATA

    from cace_calc.checkpoint import load_model
    from cace_calc.uncertainty import spearman

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", choices=sorted(DATA))
    p.add_argument("--train-structures", type=int, default=1500, help="training structures used (every k-th)")
    p.add_argument("--ridge", type=float, default=1e-4, help="lambda, relative to the mean diagonal of F^T F")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    model = load_model(args.model)
    images = ase.io.read(DATA[args.model], ":")
    split = model.metadata["split"]
    ro = model.readout

    def last_layer_rows(x):
        h = x
        for layer in range(len(ro.widths) - 2):  # the base MLP's hidden layers
            h = torch.nn.functional.silu(h @ getattr(ro, f"weight_{layer}")[0] + getattr(ro, f"bias_{layer}")[0])
        return torch.cat([h, x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)

    step = max(1, len(split["train"]) // args.train_structures)
    sets = {name: collect(model, [images[i] for i in idx], last_layer_rows)
            for name, idx in (("train", split["train"][::step]), ("valid", split["valid"]), ("test", split["test"]))}
    train = sets["train"]
    gram = {"last layer, per structure": train["mean_row"].T @ train["mean_row"],
            "last layer, per atom": train["atom_rows"].T @ train["atom_rows"] * (len(train["error"]) / len(train["atom_rows"]))}

    def rigidity(gram_matrix, rows):
        lam = args.ridge * np.trace(gram_matrix) / gram_matrix.shape[0]
        inverse = np.linalg.inv(gram_matrix + lam * np.eye(gram_matrix.shape[0]))
        return np.sqrt(np.einsum("si,ij,sj->s", rows, inverse, rows))

    print(f"{args.model}: {len(train['error'])} training, {len(sets['valid']['error'])} validation and "
          f"{len(sets['test']['error'])} test structures")
    print(f"{'energy sigma':28s} {'Spearman valid':>14s} {'Spearman test':>13s} {'test 2-sigma coverage':>21s}")
    for name in ("shipped", "heads", *gram, "force sigma"):
        sig = {}
        for s in ("valid", "test"):
            d = sets[s]
            sig[s] = (d[name] if name in ("shipped", "heads") else d["force_sigma"] if name == "force sigma"
                      else rigidity(gram[name], d["mean_row"]))
        valid, test = sets["valid"], sets["test"]
        scale = np.sqrt(np.mean((valid["error"] / sig["valid"]) ** 2))
        cover = np.mean(test["error"] <= 2 * scale * sig["test"])
        print(f"{name:28s} {spearman(sig['valid'], valid['error']):14.2f} {spearman(sig['test'], test['error']):13.2f} "
              f"{cover:21.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
