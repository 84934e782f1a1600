"""Write water.data, the LAMMPS data file of in.water-nvt: 64 liquid H2O (192 atoms) in a cubic
box, atom types 1 = H and 2 = O, masses included.

    python make_water_data.py [--structure FILE] [--out water.data]

The structure is the one cace_calc ships (cace_calc.data, "water-64") or, without it, the
development data beside the checkout (../shared/reference/liquid-64.xyz); --structure takes any
file ASE reads (its last frame; elements H and O).
"""

import argparse
from pathlib import Path

import ase.io


def water_structure(path=None):
    if path:
        return ase.io.read(path, index=-1)
    try:
        from cace_calc.data import structure

        return structure("water-64")
    except (ImportError, KeyError):  # no shipped structure: the development data beside the checkout
        shared = Path(__file__).resolve().parents[3] / "shared" / "reference" / "liquid-64.xyz"
        if not shared.is_file():
            raise SystemExit(f"no water structure: cace_calc.data has none and {shared} does not exist; "
                             "give one with --structure") from None
        return ase.io.read(shared)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structure", help="a structure file of liquid water (default: see above)")
    parser.add_argument("--out", default="water.data")
    args = parser.parse_args()
    atoms = water_structure(args.structure)
    atoms.wrap()
    ase.io.write(args.out, atoms, format="lammps-data", specorder=["H", "O"], masses=True, units="metal")
    print(f"wrote {args.out}: {len(atoms)} atoms, cell {atoms.cell.lengths().round(3).tolist()} A")


if __name__ == "__main__":
    main()
