"""The Ta and Nb ``*_Elastic`` cells of the nbmotaw training split as an extra training file, so
that the recipe can weight their stresses up (pretrained/nbmotaw/train.yaml, ``data.extra``).

Only structures of the training split are written: the validation and test split stored in the
shipped model's metadata are left out, so nothing held out is trained on. The fitted Ta C44 was
56 GPa against the DFT data's 67 with these cells weighted like the rest; fitting the model's own
stresses of the same cells (scripts/dft_elastic_constants.py) gave the same 56, so the cells' shear
stresses, not the finite-difference method, were off.

    python scripts/nbmotaw_elastic_extra.py --out runs/elastic_ta_nb_train.xyz
"""

import argparse
import sys
from pathlib import Path

import ase.io

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nbmotaw" / "nbmotaw_train.xyz"
GROUPS = ("Ta_Elastic", "Nb_Elastic")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--split-from", default="nbmotaw", help="model whose metadata holds the valid/test split")
    p.add_argument("--groups", nargs="+", default=list(GROUPS), help="config_types written (default: %(default)s)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not Path(args.data).is_file():
        sys.exit(f"the DFT data {args.data} is missing (the development data, ../shared)")
    from cace_calc import load_model

    split = load_model(args.split_from).metadata["split"]
    held = set(split["test"]) | set(split["valid"])
    frames = ase.io.read(args.data, ":")
    chosen = [a for i, a in enumerate(frames) if i not in held and a.info.get("config_type") in args.groups]
    ase.io.write(args.out, chosen)
    print(f"wrote {len(chosen)} structures ({', '.join(args.groups)}, training split only) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
