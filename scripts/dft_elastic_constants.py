"""Cubic elastic constants C11, C12, C44 (GPa) of bcc Nb, Mo, Ta and W from the DFT data itself:
linear fits of the stresses of the strained 2-atom ``*_Elastic`` cells of
../shared/data/nbmotaw/nbmotaw_train.xyz against their Green-Lagrange strain.

The reference cell is the cubic cell of the DFT lattice constant (zero pressure of the same
cells: scripts/sanity_nbmotaw.py); only cells whose strain components are all below
--max-strain enter the fit, and a hydrostatic stress offset is fitted alongside.
These are the DFT values the model's elastic constants (examples/elastic_phonons_bcc.py) are
compared with in the nbmotaw model card.

    python scripts/dft_elastic_constants.py [--max-strain 0.011]
"""

import argparse
import sys
from pathlib import Path

import ase.io
import numpy as np
from ase import units
from sanity_nbmotaw import dft_lattice_constants

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nbmotaw" / "nbmotaw_train.xyz"


def cubic_constants(cells, a0: float, max_strain: float) -> tuple[np.ndarray, int, float]:
    """(C11, C12, C44, p0) in GPa, the number of cells used and the fit's RMS residual (GPa)."""
    rows, rhs, used = [], [], 0
    for atoms in cells:
        f = (atoms.cell.array / a0).T  # deformation gradient of the cubic reference cell
        e = 0.5 * (f.T @ f - np.eye(3))
        if np.abs(e).max() > max_strain:
            continue
        used += 1
        s = atoms.get_stress(voigt=False) / units.GPa
        diag = np.diag(e)
        for i in range(3):
            rows.append([diag[i], diag.sum() - diag[i], 0.0, 1.0])
            rhs.append(s[i, i])
        for i, j in ((1, 2), (0, 2), (0, 1)):
            rows.append([0.0, 0.0, 2 * e[i, j], 0.0])
            rhs.append(s[i, j])
    a, b = np.array(rows), np.array(rhs)
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    return x, used, float(np.sqrt(np.mean((a @ x - b) ** 2)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--max-strain", type=float, default=0.011, help="largest strain component used")
    args = p.parse_args(argv)
    if not Path(args.data).exists():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    frames = ase.io.read(args.data, ":")
    lattice = dft_lattice_constants(frames)
    print(f"{'element':8s} {'a0 (A)':>7s} {'cells':>5s} {'C11':>6s} {'C12':>6s} {'C44':>6s} {'p0':>6s} {'rms':>5s}  (GPa)")
    for element in ("Nb", "Mo", "Ta", "W"):
        cells = [a for a in frames if a.info.get("config_type") == f"{element}_Elastic"]
        a0 = lattice[element]
        (c11, c12, c44, p0), used, rms = cubic_constants(cells, a0, args.max_strain)
        print(f"{element:8s} {a0:7.4f} {used:5d} {c11:6.0f} {c12:6.0f} {c44:6.0f} {p0:6.2f} {rms:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
