"""Liquid water at 300 K: Langevin NVT molecular dynamics with a CACE model and ASE.

Runs MD of the 64-molecule water box shipped with the package (water-64), writes the ASE log
(md.log) and trajectory (md.traj) to --out, then reads the trajectory back and checks that the
molecules stay intact (O-H bond lengths).

    python examples/md_water.py [--model water] [--steps 2000] [--out md-water] [--fast]

--fast runs 10 steps. The same run from the shell:
``cace-calc md water-64 --model water --steps 2000 --out md-water``.
"""

import argparse
import sys

import ase.io
import numpy as np
from _common import find_model, is_fast

from cace_calc import CACECalculator
from cace_calc.data import structure
from cace_calc.md import run_md


def oh_bond_lengths(atoms) -> np.ndarray:
    """Distance (A) from every H to its nearest O (minimum image)."""
    d = atoms.get_all_distances(mic=True)
    return d[np.ix_(atoms.numbers == 1, atoms.numbers == 8)].min(axis=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="water", help="pretrained model name or model file (water)")
    parser.add_argument("--steps", type=int, default=2000, help="MD steps (2000)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs (0.5)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (300)")
    parser.add_argument("--out", default="md-water", help="output folder (md-water)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--fast", action="store_true", help="10 steps")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    steps = 10 if fast else args.steps
    model = find_model(args.model, "H and O")
    if model is None:
        return 0 if fast else 1

    atoms = structure("water-64")  # 192 atoms, equilibrated at 300 K
    calc = CACECalculator(model, device=args.device, dtype="float32")  # float32: fast, accurate enough for MD
    res = run_md(atoms, calc, temperature=args.temperature, steps=steps, timestep=args.timestep,
                 ensemble="nvt", friction=0.01, out_dir=args.out, log_every=max(1, steps // 100),
                 traj_every=max(1, steps // 20), seed=0)
    print(f"{steps} steps of {args.timestep} fs: mean temperature {res.temperature_mean_k:.0f} K, "
          f"{res.ms_per_step:.1f} ms per step ({len(atoms)} atoms, {calc.device})")

    traj = ase.io.read(res.trajectory_file, ":")
    bonds = np.array([oh_bond_lengths(frame) for frame in traj])
    print(f"O-H bonds over {len(traj)} frames: mean {bonds.mean():.3f} A, longest {bonds.max():.3f} A "
          f"({'molecules intact' if bonds.max() < 1.3 else 'some H left its O'})")
    print(f"wrote {res.log_file} and {res.trajectory_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
