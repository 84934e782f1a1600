"""The active-learning loop with a pretrained model: choose the structures the model is least
sure of, label them (DFT), fine-tune on them, check.

Here the candidates are the 20 frames of ../shared/data/water-dplr (128 H2O computed with
another DFT set-up than the pretrained `water` model's); their DFT labels stand in for the
calculations you would run on the chosen frames. Steps:

1. evaluate the candidates with the model's uncertainty (labels hidden from it) and choose the
   N most uncertain, mutually different ones (``select_uncertain``; ``cace-calc eval
   --select N``);
2. "label" them (here: take their DFT energies and forces from the file);
3. fine-tune the model on them (``finetune``; ``cace-calc finetune``);
4. check the fine-tuned model on the candidates not chosen: errors and uncertainty before and
   after.

    python examples/select_and_finetune.py [--model water] [--select 8] [--output DIR] [--fast]

--fast: 3 frames chosen, 2 epochs. Needs the development data (../shared, see README);
without it, says so and exits with 1.
"""

import argparse
import tempfile
from pathlib import Path

import ase.io
import numpy as np
from _common import SHARED, is_fast, require_shared

from cace_calc.evaluate import evaluate_structures, select_uncertain
from cace_calc.train.finetune import finetune

CANDIDATES = SHARED / "data" / "water-dplr" / "water_dplr_train.xyz"


def unlabelled(images):
    """Copies without their labels: what the model sees before any DFT is run."""
    out = []
    for a in images:
        b = a.copy()
        b.calc = None
        for key in ("energy", "free_energy", "stress"):
            b.info.pop(key, None)
        b.arrays.pop("forces", None)
        out.append(b)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="water", help="a model with an uncertainty (default: water)")
    parser.add_argument("--select", type=int, default=8, help="structures to choose and label (8)")
    parser.add_argument("--output", help="fine-tuning folder (default: a temporary folder)")
    parser.add_argument("--fast", action="store_true", help="3 structures, 2 epochs")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    if not require_shared(CANDIDATES):
        return 1
    n_select = 3 if fast else args.select
    labelled = ase.io.read(CANDIDATES, ":")
    # 1. the model's uncertainty on the candidates, labels hidden
    seen = evaluate_structures(unlabelled(labelled), args.model, uncertainty=True, progress=False)
    chosen = select_uncertain(seen.images, n_select)
    rest = [k for k in range(len(labelled)) if k not in chosen]
    sigma = [float(a.arrays["forces_uncertainty"].max()) for a in seen.images]
    print(f"{len(labelled)} candidates; chose {len(chosen)}: {chosen} (largest force sigma "
          f"{np.mean([sigma[k] for k in chosen]):.3f} eV/A on average, the others {np.mean([sigma[k] for k in rest]):.3f})")
    with tempfile.TemporaryDirectory() as tmp:
        # 2. label them: here, their DFT labels from the file
        data = Path(tmp) / "chosen.xyz"
        ase.io.write(data, [labelled[k] for k in chosen])
        # 3. fine-tune (with 3 or fewer frames there is nothing to hold out: they pick the epoch too)
        out = Path(args.output) if args.output else Path(tmp) / "finetuned"
        res = finetune(args.model, [data], output=out, epochs=2 if fast else 100,
                       valid=data if n_select < 4 else None, log=lambda *a: None)
        # 4. check on the candidates not chosen
        check = [labelled[k] for k in rest]
        before = evaluate_structures(check, args.model, uncertainty=True, progress=False)
        after = evaluate_structures(check, res.run.model, uncertainty=True, progress=False)
    for name, r in (("before", before), ("after", after)):
        m = r.metrics
        sig = np.mean([a.arrays["forces_uncertainty"].mean() for a in r.images])
        print(f"{name:6s} on the {len(rest)} others: energy RMSE {m['energy_rmse_mev_per_atom']:.2f} meV/atom "
              f"(offset {m['energy_offset_mev_per_atom']:+.1f}), forces RMSE {m['forces_rmse_mev_per_a']:.1f} meV/A, "
              f"mean force sigma {sig:.3f} eV/A")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
