"""Train a small CACE model on 12 frames of liquid water, in under a minute on a CPU.

Writes the first 12 frames of ../shared/data/water (PBE0 energies and forces) to a data file,
fits a small model for a few epochs with ``cace_calc.train.train`` (recipe as a dict; a YAML
file with the same sections works with ``cace-calc train recipe.yaml``), prints the errors on
the validation and test frames and uses the trained model as an ASE calculator. Far too little
data and training for a usable potential: it only shows the workflow.

    python examples/train_small.py [--epochs 30] [--output DIR] [--fast]

--fast: 6 frames, 2 epochs and a smaller model. Without --output the run goes to a temporary
folder. Needs the development data (../shared, see README); without it, says so and exits with 1.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import ase.io
from _common import WATER, is_fast, require_shared

from cace_calc import CACECalculator
from cace_calc.train import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="epochs (30)")
    parser.add_argument("--output", help="run folder (default: a temporary folder); must not hold a run")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--fast", action="store_true", help="6 frames, 2 epochs, smaller model")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    if not require_shared(WATER):  # DFT-labelled frames: development data only
        return 1

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "water12.xyz"
        frames = ase.io.read(WATER, index=":6" if fast else ":12")
        ase.io.write(data, frames)  # extended XYZ with energy and forces: the training format
        recipe = {
            "name": "water-small",
            "data": {"train": str(data), "valid_fraction": 0.2, "test_fraction": 0.2, "seed": 0},
            "model": {"cutoff": 4.0 if fast else 5.0, "n_rbf": 4, "n_radial": 4 if fast else 8, "l_max": 2,
                      "nu_max": 2, "n_embed": 2, "readout_hidden": [16] if fast else [32, 16]},
            "e0": "fit",  # per-element energies by least squares on the training frames
            "training": {"epochs": 2 if fast else args.epochs, "batch_size": 2, "lr": 0.01, "device": args.device,
                         "loss": [{"from_epoch": 0, "energy": 100.0, "forces": 100.0}]},
            "output": args.output or str(Path(tmp) / "run"),
        }
        result = train(recipe, progress=False)  # writes model.pt, checkpoint.pt, log.jsonl, metrics.json
        for split in ("valid", "test"):
            m = result.metrics[split]
            print(f"{split}: {m['n_structures']} frames, energy RMSE {m['energy_rmse_mev_per_atom']:.1f} "
                  f"meV/atom, force RMSE {m['forces_rmse_mev_per_a']:.0f} meV/A")
        calc = CACECalculator(result.output / "model.pt")  # the trained model is an ordinary model file

    atoms = ase.io.read(WATER, index=-1)  # a frame it was not trained on
    atoms.calc = calc
    print(f"last frame of the data set: energy {atoms.get_potential_energy():.3f} eV "
          f"(DFT {ase.io.read(WATER, index=-1).get_potential_energy():.3f} eV)")
    if args.output:
        print(f"model and logs in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
