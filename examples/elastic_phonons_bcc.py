"""Elastic constants, equation of state and phonons of bcc W, Mo, Nb, Ta and a random NbMoTaW
solid solution with the pretrained ``nbmotaw`` model.

For every material: relax the cell, fit the 6x6 elastic tensor (GPa) with its uncertainty, the
Voigt-Reuss-Hill moduli and the Born stability check, fit a Birch-Murnaghan E(V), and compute
the phonon band structure, DOS and thermal properties (phonopy). Writes per-material folders with
phonopy's files and plots (bands_dos.png, thermal.png, eos.png) and summary.json to --out, and
prints a summary table next to the elastic constants of the DFT training data and approximate
room-temperature experimental ones.

The solid solution is a random equiatomic occupation of a cubic bcc supercell (not a special
quasi-random structure): its "bands" are those of the supercell, folded, and its tensor is only
approximately cubic.

    python examples/elastic_phonons_bcc.py [--model nbmotaw] [--out elastic_phonons_bcc] [--fast] [--no-relax]
                                           [--materials W Mo NbMoTaW]

--fast (or CACE_EXAMPLES_FAST=1) uses tiny settings (2x2x2 phonon supercells, a 16-atom alloy,
coarse meshes) to check that everything runs; the numbers are then not converged. If the model
is not installed the script says so and exits (status 0 with --fast, 1 otherwise).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import find_model, is_fast
from ase.build import bulk

from cace_calc import CACECalculator
from cace_calc.elastic import birch_murnaghan_eos, elastic_constants
from cace_calc.phonons import compute_phonons
from cace_calc.relax import relax_positions

# bcc lattice constants (A) near the PBE values; the cells are relaxed with the model anyway
LATTICE = {"Nb": 3.31, "Mo": 3.16, "Ta": 3.32, "W": 3.18}
# C11, C12, C44 (GPa) of the DFT (PBE) training data itself: stress-strain fits of its strained
# *_Elastic cells (python scripts/dft_elastic_constants.py); the model is trained to reproduce these
DFT_DATA = {"Nb": (243, 142, 2), "Mo": (483, 155, 106), "Ta": (261, 162, 67), "W": (523, 196, 141)}
# approximate room-temperature experimental C11, C12, C44 in GPa, for orientation only (PBE gives
# Nb a C44 near zero, against 28 GPa measured)
EXPERIMENT = {"Nb": (246, 133, 28), "Mo": (464, 158, 109), "Ta": (266, 158, 87), "W": (522, 204, 161)}


def random_alloy(n: int, seed: int):
    """An equiatomic random NbMoTaW occupation of an n x n x n cubic bcc supercell (2 n^3 atoms)."""
    atoms = bulk("W", "bcc", a=float(np.mean(list(LATTICE.values()))), cubic=True).repeat(n)
    if len(atoms) % 4:
        raise ValueError(f"{len(atoms)} atoms cannot be shared equally by 4 elements; use an even n")
    species = np.repeat(["Nb", "Mo", "Ta", "W"], len(atoms) // 4)
    atoms.set_chemical_symbols(np.random.default_rng(seed).permutation(species).tolist())
    return atoms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nbmotaw", help="pretrained model name or model file (nbmotaw)")
    parser.add_argument("--out", default="elastic_phonons_bcc", help="output folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fast", action="store_true", help="tiny settings for a quick check")
    parser.add_argument("--alloy-size", type=int, help="cubic bcc repetitions of the alloy cell (4; fast: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random alloy occupation")
    parser.add_argument("--materials", nargs="+", choices=[*LATTICE, "NbMoTaW"], default=[*LATTICE, "NbMoTaW"],
                        help="which materials (default: all)")
    parser.add_argument("--no-relax", dest="relax", action="store_false",
                        help="keep the cells at the lattice constants above (internal positions are still relaxed)")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    model_path = find_model(args.model, "Nb, Mo, Ta and W")
    if model_path is None:
        return 0 if fast else 1
    calc = CACECalculator(model_path, device=args.device, dtype="float64")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"model {model_path} on {calc.device}; {'fast (unconverged) settings' if fast else 'full settings'}")

    n_alloy = args.alloy_size or (2 if fast else 4)
    materials = {el: bulk(el, "bcc", a=a) for el, a in LATTICE.items() if el in args.materials}
    if "NbMoTaW" in args.materials:
        materials["NbMoTaW"] = random_alloy(n_alloy, args.seed)
    summary = {}
    for name, atoms in materials.items():
        t0 = time.perf_counter()
        alloy = name == "NbMoTaW"
        print(f"\n=== {name} ({len(atoms)} atoms) ===")
        if not args.relax and alloy:  # fixed cell, but the alloy's atoms still move off the ideal sites
            atoms = relax_positions(atoms, calc)
        el = elastic_constants(atoms, calc, relax=args.relax, delta=0.005, n_steps=3 if fast else 5, progress=True)
        print(el.table())
        try:
            eos = birch_murnaghan_eos(el.atoms, calc, relax=False, n_points=7 if fast else 11,
                                      plot=out / name / "eos.png")
            print(eos.table())
        except ValueError as e:  # e.g. no minimum in the scanned range
            eos = None
            print(f"no equation of state for {name}: {e}")
        supercell = (1, 1, 1) if alloy else ((2, 2, 2) if fast else (5, 5, 5))
        ph = compute_phonons(el.atoms, calc, relax=False, supercell=supercell, mesh=8.0 if fast else 40.0,
                             band_npoints=11 if fast else 51, out_dir=out / name,
                             title=f"{name} ({'random alloy, ' if alloy else ''}{args.model})")
        print(ph.table())
        summary[name] = {"elastic": el.to_dict(), "eos": eos.to_dict() if eos else None,
                         "phonons": {k: v for k, v in ph.to_dict().items() if not k.startswith(("band_", "dos"))},
                         "seconds": time.perf_counter() - t0}

    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\nmaterial   a (A)    C11    C12    C44   B_Hill  G_Hill  B_EOS  stable  min freq (THz)   "
          "DFT data C11/C12/C44   experiment")
    for name, s in summary.items():
        e, C = s["elastic"], np.array(s["elastic"]["C_GPa"])
        a = (2 * e["volume_per_atom_A3"]) ** (1 / 3)  # cubic bcc lattice constant from the volume
        exp = "/".join(str(v) for v in EXPERIMENT[name]) if name in EXPERIMENT else "-"
        dft = "/".join(str(v) for v in DFT_DATA[name]) if name in DFT_DATA else "-"
        c11, c12, c44 = (np.mean(np.diag(C)[:3]), np.mean([C[0, 1], C[0, 2], C[1, 2]]), np.mean(np.diag(C)[3:]))
        b_eos = f"{s['eos']['b0_GPa']:6.0f}" if s["eos"] else "     -"
        print(f"{name:9s} {a:6.3f} {c11:6.0f} {c12:6.0f} {c44:6.0f} {e['bulk_hill_GPa']:7.0f} "
              f"{e['shear_hill_GPa']:7.0f} {b_eos}  {'yes' if e['born_stable'] else 'NO':6s} "
              f"{s['phonons']['min_frequency_THz']:10.3f}       {dft:20s}  {exp}")
    print(f"\nwrote {out}/summary.json and per-material folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
