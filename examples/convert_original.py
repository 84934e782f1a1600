"""Convert a model trained with the original CACE code into a cace_calc model file and use it.

Converts the published CACE water model (../shared/reference/cace_water_cacefit.pth, with its
per-element energies E0 from cace_water_cacefit_e0.json) into a model file in a temporary
folder (or --output), evaluates it on the structure the original implementation was run on
(water_reference_outputs.xyz) and compares: the energies, forces and stress agree to
rounding. The published model is used for this demonstration only; it is never copied into
the project.

    python examples/convert_original.py [--original X.pth --e0 X_e0.json] [--output water.pt] [--fast]

The same from the shell: ``cace-calc convert cace_water_cacefit.pth water.pt --e0 cace_water_cacefit_e0.json``.
--fast is accepted for uniformity with the other examples (this one is quick anyway). Needs the
development data (../shared, see README) or your own files; without them, says so and exits with 1.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import ase.io
import numpy as np
from _common import REFERENCE, require_shared

from cace_calc import CACECalculator, convert_original, save_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", default=str(REFERENCE / "cace_water_cacefit.pth"),
                        help="model file of the original CACE code (default: the published water model)")
    parser.add_argument("--e0", default=str(REFERENCE / "cace_water_cacefit_e0.json"),
                        help='JSON file {"Z": E0 in eV} (default: the published water E0)')
    parser.add_argument("--reference", default=str(REFERENCE / "water_reference_outputs.xyz"),
                        help="outputs of the original code to compare with (energy without E0)")
    parser.add_argument("--output", help="where to write the converted model (default: a temporary folder)")
    parser.add_argument("--fast", action="store_true", help="no effect (this example is quick)")
    args = parser.parse_args(argv)
    if not require_shared(*map(Path, (args.original, args.e0, args.reference))):  # not shipped: licence
        return 1

    with tempfile.TemporaryDirectory() as tmp:
        model = convert_original(args.original, e0=args.e0)  # reads the pickle without running its code
        path = save_model(model, args.output or Path(tmp) / "water.pt")
        print(f"converted {Path(args.original).name} -> {path if args.output else 'a temporary water.pt'}: "
              f"{sum(p.numel() for p in model.parameters())} parameters, cutoff {model.cutoff} A")
        calc = CACECalculator(path, dtype="float64")  # now an ordinary cace_calc model file

    ref = ase.io.read(args.reference)  # the original implementation's energy (without E0), forces, stress
    atoms = ref.copy()
    atoms.calc = calc
    with open(args.e0) as fh:
        e0 = {int(z): v for z, v in json.load(fh).items()}
    e0_sum = sum(e0.get(int(z), 0.0) for z in atoms.numbers)
    de = atoms.get_potential_energy() - e0_sum - ref.get_potential_energy()
    df = np.abs(atoms.get_forces() - ref.get_forces()).max()
    ds = np.abs(atoms.get_stress() - ref.get_stress()).max()
    print(f"{len(atoms)} atoms, cace_calc vs the original implementation: |dE| {abs(de):.1e} eV, "
          f"max |dF| {df:.1e} eV/A, max |dstress| {ds:.1e} eV/A^3")
    print(f"energy with E0: {atoms.get_potential_energy():.4f} eV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
