"""Quick start: a CACE model in ASE, from evaluation to a short MD run.

Evaluates an equilibrated 64-molecule liquid water box (frame 0 of the water data set in
../shared/data) and runs a short Langevin MD at 300 K, with the pretrained ``water`` model,
or --model PATH. Until the pretrained model is installed it converts the published CACE water
model (read from ../shared/reference, used here only as a demonstration and never copied into
the project).

    python examples/quickstart.py [--model water] [--steps 50] [--dtype float32] [--fast]

--fast runs 5 MD steps.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np
from _common import REFERENCE, WATER, is_fast
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from cace_calc import CACECalculator, available_models, convert_original, save_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="MD steps of 0.5 fs (default 50)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--model", help="pretrained model name or model file (default: water if installed, "
                                        "else the converted published model)")
    parser.add_argument("--fast", action="store_true", help="5 MD steps")
    args = parser.parse_args(argv)
    steps = 5 if is_fast(args) else args.steps

    if args.model or "water" in available_models():
        calc = CACECalculator(args.model or "water", device="auto", dtype=args.dtype)
        print(f"model: {args.model or 'pretrained water'}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            model = convert_original(REFERENCE / "cace_water_cacefit.pth", e0=REFERENCE / "cace_water_cacefit_e0.json")
            path = save_model(model, Path(tmp) / "water.pt")  # a cace_calc model file
            calc = CACECalculator(path, device="auto", dtype=args.dtype)
        print("model: the published CACE water model, converted (the pretrained water model is not installed)")

    atoms = ase.io.read(WATER, index=0)
    atoms.calc = calc
    t0 = time.perf_counter()
    energy = atoms.get_potential_energy()
    print(f"{len(atoms)} atoms on {calc.device}, {args.dtype}: E = {energy:.4f} eV, "
          f"max |F| = {np.abs(atoms.get_forces()).max():.3f} eV/A, "
          f"pressure = {-atoms.get_stress()[:3].mean() / units.GPa:.3f} GPa "
          f"({time.perf_counter() - t0:.3f} s)")

    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, timestep=0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs,
                   fixcm=False, rng=np.random.default_rng(1))
    t0 = time.perf_counter()
    for step in range(0, steps + 1, max(1, steps // 5)):
        if step:
            dyn.run(max(1, steps // 5))
        print(f"step {dyn.nsteps:5d}  T = {atoms.get_temperature():6.1f} K  "
              f"Epot = {atoms.get_potential_energy():.4f} eV")
    dt = (time.perf_counter() - t0) / max(dyn.nsteps, 1)
    print(f"{dt * 1e3:.1f} ms per MD step ({len(atoms) / dt:.0f} atom-steps/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
