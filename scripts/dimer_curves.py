"""Isolated dimers of every element pair of a model: energy relative to the two free atoms from
0.1 A out past the cutoff, next to the bare ZBL repulsion and (nbmotaw) the published SNAP.

Checks what the model card states: the curve rises monotonically as r falls from 1.2 A to 0.1 A
(H-H from 0.6 A, O-H from 0.8 A, where real bonds sit), and lies within a factor 2 of ZBL at
0.3 and 0.5 A.

    python scripts/dimer_curves.py water --out runs/dimers/water
    python scripts/dimer_curves.py nbmotaw --out runs/dimers/nbmotaw [--no-snap]

Writes dimers.json and dimers.png to --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MONOTONIC_FROM = {frozenset(["H"]): 0.6, frozenset(["O", "H"]): 0.8}  # A; other pairs from 1.2 A
RADII = np.concatenate([np.linspace(0.1, 2.0, 96), np.linspace(2.05, 6.0, 80)])


def model_curve(model, a: str, b: str) -> np.ndarray:
    """E(r) - E(free atoms) in eV for the dimer a-b at RADII."""
    from ase import Atoms

    from cace_calc import CACECalculator

    calc = CACECalculator(model)
    far = Atoms(a + b, positions=[[0, 0, 0], [50.0, 0, 0]])
    images = [Atoms(a + b, positions=[[0, 0, 0], [r, 0, 0]]) for r in RADII]
    energies = np.array([res["energy"] for res in calc.calculate_batch(images + [far])])
    return energies[:-1] - energies[-1]


def zbl_curve(a: str, b: str) -> np.ndarray:
    import torch
    from ase.data import atomic_numbers

    from cace_calc.nn.zbl import zbl_pair_energy

    r = torch.tensor(RADII, dtype=torch.float64)
    za = torch.full_like(r, float(atomic_numbers[a]))
    zb = torch.full_like(r, float(atomic_numbers[b]))
    return zbl_pair_energy(za, zb, r).numpy()


def snap_curve(a: str, b: str) -> np.ndarray:
    """SNAP dimer in a 30 A periodic box (its cutoff is below 5 A)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from ase import Atoms
    from snap_peer import SNAPCalculator

    calc = SNAPCalculator()

    def energy(r):
        atoms = Atoms(a + b, positions=[[5, 5, 5], [5 + r, 5, 5]], cell=[30, 30, 30], pbc=True)
        atoms.calc = calc
        return atoms.get_potential_energy()

    far = energy(14.0)
    return np.array([energy(r) - far for r in RADII])


def checks(a: str, b: str, curve: np.ndarray, zbl: np.ndarray) -> dict:
    start = MONOTONIC_FROM.get(frozenset([a, b]), 1.2)
    inside = RADII <= start + 1e-9
    rising = bool(np.all(np.diff(curve[inside]) < 0))  # energy falls as r grows up to `start`
    ratio = {f"{r:.1f}": float(np.interp(r, RADII, curve) / np.interp(r, RADII, zbl)) for r in (0.3, 0.5)}
    return {"monotonic_from_a": start, "monotonic": rising, "ratio_to_zbl": ratio,
            "within_factor_2_of_zbl": all(0.5 <= v <= 2.0 for v in ratio.values())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="pretrained name or model file")
    p.add_argument("--out", required=True)
    p.add_argument("--no-snap", action="store_true", help="skip SNAP (nbmotaw pairs)")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.data import chemical_symbols

    from cace_calc import load_model

    model = load_model(args.name)
    symbols = [chemical_symbols[z] for z in model.config.elements]
    pairs = list(itertools.combinations_with_replacement(symbols, 2))
    use_snap = not args.no_snap and set(symbols) <= {"Nb", "Mo", "Ta", "W"}
    result = {"model": args.name, "radii_a": RADII.tolist(), "pairs": {}}
    n_col = min(4, len(pairs))
    n_row = -(-len(pairs) // n_col)
    fig, axes = plt.subplots(n_row, n_col, figsize=(3.6 * n_col, 3.0 * n_row), squeeze=False)
    for ax, (a, b) in zip(axes.ravel(), pairs):
        curve, zbl = model_curve(model, a, b), zbl_curve(a, b)
        entry = {"model_ev": curve.tolist(), "zbl_ev": zbl.tolist(), **checks(a, b, curve, zbl)}
        ax.semilogy(RADII, np.clip(zbl, 1e-3, None), "k--", lw=1, label="ZBL")
        ax.semilogy(RADII, np.clip(curve, 1e-3, None), label=f"{args.name} (> 0 part)")
        if use_snap:
            snap = snap_curve(a, b)
            entry["snap_ev"] = snap.tolist()
            ax.semilogy(RADII, np.clip(snap, 1e-3, None), ":", label="SNAP")
        ax.set_title(f"{a}-{b}: {'monotonic' if entry['monotonic'] else 'NOT monotonic'}, "
                     f"E/ZBL {entry['ratio_to_zbl']['0.3']:.2f} @0.3 A", fontsize=8)
        ax.set_xlabel("r (A)")
        ax.set_ylabel("E - E(free atoms) (eV)")
        ax.set_xlim(0, 3.5)
        ax.legend(fontsize=7)
        result["pairs"][f"{a}-{b}"] = entry
        print(f"{a}-{b}: monotonic below {entry['monotonic_from_a']} A: {entry['monotonic']}; E/ZBL at 0.3/0.5 A "
              f"{entry['ratio_to_zbl']['0.3']:.2f}/{entry['ratio_to_zbl']['0.5']:.2f}; at 1.0 A "
              f"{np.interp(1.0, RADII, curve):.1f} eV", flush=True)
    for ax in axes.ravel()[len(pairs):]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "dimers.png", dpi=100)
    (out / "dimers.json").write_text(json.dumps(result))
    print(f"wrote {out / 'dimers.json'} and {out / 'dimers.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
