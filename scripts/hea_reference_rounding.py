"""Why the HEA25 reference outputs match to 1e-7 eV and not 1e-8: rounding of the stored positions.

The reference file stores positions with 8 decimals. If the reference run used unrounded
positions x_true = x_file + delta with |delta| <= 5e-9 A, its forces are F(x_file) - H delta.
This script computes the Hessian H of the converted model by central differences of the forces,
finds the delta inside the +-5e-9 A box that best explains the force difference (bounded least
squares) and reports the remaining force mismatch and the energy shift that delta implies.
Takes about a minute on 2 cores.

    python scripts/hea_reference_rounding.py
"""

from pathlib import Path

import ase.io
import numpy as np
from scipy.optimize import lsq_linear

from cace_calc import CACECalculator, convert_original

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def main():
    ref = ase.io.read(REFERENCE / "hea25_reference_outputs.xyz")
    calc = CACECalculator(convert_original(REFERENCE / "cace_hea25_cacefit.pth"), device="cpu")
    atoms = ref.copy()
    atoms.calc = calc

    def forces(x):
        atoms.positions = x.reshape(-1, 3)
        return atoms.get_forces().ravel()

    x0 = ref.positions.ravel().copy()
    f0 = forces(x0)
    atoms.positions = ref.positions
    e0 = atoms.get_potential_energy()
    h = 1e-4
    hessian = np.empty((x0.size, x0.size))
    for k in range(x0.size):
        step = np.zeros_like(x0)
        step[k] = h
        hessian[:, k] = -(forces(x0 + step) - forces(x0 - step)) / (2 * h)
    hessian = 0.5 * (hessian + hessian.T)

    f_ref = ref.get_forces().ravel()
    fit = lsq_linear(hessian, (f0 - f_ref) * 1e9, bounds=(-5.0, 5.0), tol=1e-12, max_iter=10000)
    delta = fit.x * 1e-9
    residual = f0 - hessian @ delta - f_ref
    print(f"as stored:   |dE| = {abs(e0 - ref.get_potential_energy()):.2e} eV, "
          f"max |dF| = {np.abs(f0 - f_ref).max():.2e} eV/A")
    print(f"with a position shift |delta| <= {np.abs(delta).max():.1e} A: max |dF| = "
          f"{np.abs(residual).max():.2e} eV/A (stored forces are rounded to 5e-9)")
    print(f"energy shift implied by that delta: {-(f0 @ delta):.2e} eV "
          f"(observed E_ref - E = {ref.get_potential_energy() - e0:.2e} eV)")


if __name__ == "__main__":
    main()
