"""A CACE model as an ASE calculator: energy, forces, stress, per-atom energies, many structures.

    python examples/ase_calculator.py [--model water] [--device auto] [--fast]

Uses the pretrained ``water`` model (or any cace_calc model file for H and O via --model) on
the 64-molecule liquid water box shipped with the package (``cace_calc.data``) and rattled copies
of it. --fast evaluates 3 structures in one call instead of 16.
"""

import argparse
import sys

import numpy as np
from _common import find_model, is_fast
from ase import units
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError

from cace_calc import CACECalculator
from cace_calc.data import structure


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="water", help="pretrained model name or model file (water)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--fast", action="store_true", help="3 frames instead of 16")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    model = find_model(args.model, "H and O")
    if model is None:
        return 0 if fast else 1

    # one structure: 64 water molecules in a periodic box
    calc = CACECalculator(model, device=args.device, dtype="float64")
    atoms = structure("water-64")  # equilibrated at 300 K with the water model
    atoms.calc = calc
    energy = atoms.get_potential_energy()  # eV
    forces = atoms.get_forces()  # eV/A, (N, 3)
    stress = atoms.get_stress()  # eV/A^3, Voigt xx yy zz yz xz xy, positive = tensile
    energies = atoms.get_potential_energies()  # eV per atom, they sum to the energy
    print(f"{atoms.get_chemical_formula()} on {calc.device}: energy {energy:.4f} eV, "
          f"max |F| {np.linalg.norm(forces, axis=1).max():.3f} eV/A, "
          f"pressure {-stress[:3].mean() / units.GPa:.3f} GPa")
    print(f"per-atom energies: O {energies[atoms.numbers == 8].mean():.4f} eV, "
          f"H {energies[atoms.numbers == 1].mean():.4f} eV on average; sum - energy = "
          f"{energies.sum() - energy:.1e} eV")

    # a molecule without a cell: energy and forces, no stress
    h2o = molecule("H2O")
    h2o.calc = calc
    print(f"isolated H2O: energy {h2o.get_potential_energy():.4f} eV, "
          f"forces on O {np.round(h2o.get_forces()[0], 4).tolist()} eV/A")
    try:
        h2o.get_stress()
    except PropertyNotImplementedError as e:
        print(f"  no stress without a periodic cell: {e}")

    # many structures in one batched call (here rattled copies of the box), the same as one by one
    rng = np.random.default_rng(0)
    frames = [atoms.copy() for _ in range(3 if fast else 16)]
    for frame in frames:
        frame.positions += rng.normal(scale=0.02, size=frame.positions.shape)  # A
    results = calc.calculate_batch(frames)  # one result dict per structure
    single = []
    for frame in frames:
        frame.calc = calc
        single.append(frame.get_potential_energy())
    de = max(abs(r["energy"] - e) for r, e in zip(results, single))
    print(f"{len(frames)} frames in one call: energies {min(single):.3f} to {max(single):.3f} eV, "
          f"largest difference to one-by-one calls {de:.1e} eV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
