"""Quick start: a CACE model in ASE, from evaluation to a short MD run.

Evaluates an equilibrated 64-molecule liquid water box (shipped with the package:
``cace_calc.data.structure("water-64")``) and runs a short Langevin MD at 300 K, with the
pretrained ``water`` model or --model PATH. Needs nothing beside the installed package.

    python examples/quickstart.py [--model water] [--steps 50] [--dtype float32] [--fast]

--fast runs 5 MD steps.
"""

import argparse
import sys
import time

import numpy as np
from _common import is_fast
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from cace_calc import CACECalculator
from cace_calc.data import structure


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="MD steps of 0.5 fs (default 50)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--model", default="water", help="pretrained model name or model file (default water)")
    parser.add_argument("--fast", action="store_true", help="5 MD steps")
    args = parser.parse_args(argv)
    steps = 5 if is_fast(args) else args.steps

    calc = CACECalculator(args.model, device="auto", dtype=args.dtype)
    print(f"model: {args.model}")

    atoms = structure("water-64")  # 64 H2O, equilibrated at 300 K with the water model
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
