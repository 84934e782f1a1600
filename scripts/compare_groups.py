"""Errors of two models per group (config_type) of the first model's test split: a retrained
model must be no worse than the one it replaces on any group.

    python scripts/compare_groups.py runs/nbmotaw-heads/model.pt runs/nbmotaw-v3/model.pt [--extra runs/snap/multinary_test.xyz]

Prints a table (energy per atom meV/atom, forces meV/A, stress GPa; RMSE) and writes --json.
"""

from __future__ import annotations

import argparse
import json

import ase.io

from cace_calc import load_model
from cace_calc.evaluate import evaluate_structures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("new")
    p.add_argument("old")
    p.add_argument("--extra", nargs="*", default=[], help="more labelled files, each one group")
    p.add_argument("--json")
    args = p.parse_args(argv)
    new = load_model(args.new)
    images = ase.io.read(new.metadata["recipe"]["data"]["train"], ":")
    test = [images[i] for i in new.metadata["split"]["test"]]
    groups: dict[str, list] = {}
    for a in test:
        groups.setdefault(a.info.get("config_type", "all"), []).append(a)
    for path in args.extra:
        groups[path] = ase.io.read(path, ":")
    keys = ("energy_rmse_mev_per_atom", "forces_rmse_mev_per_a", "stress_rmse_gpa")
    rows, worse = {}, []
    print(f"{'group':32s} {'n':>4s}  " + "  ".join(f"{k.split('_')[0]:>15s}" for k in keys) + "   (new / old)")
    for g, ims in sorted(groups.items()):
        m_new = evaluate_structures(ims, new, device="cpu").metrics
        m_old = evaluate_structures(ims, args.old, device="cpu").metrics
        rows[g] = {"n": len(ims), "new": m_new, "old": m_old}
        cells = []
        for k in keys:
            if k in m_new:
                cells.append(f"{m_new[k]:7.3f}/{m_old[k]:7.3f}")
                if m_new[k] > m_old[k] * 1.0001:
                    worse.append((g, k, m_new[k], m_old[k]))
            else:
                cells.append(f"{'-':>15s}")
        print(f"{g[-32:]:32s} {len(ims):4d}  " + "  ".join(cells), flush=True)
    print(f"worse on {len(worse)} of the group/quantity pairs:")
    for w in worse:
        print(f"  {w[0]} {w[1]}: {w[2]:.3f} vs {w[3]:.3f} ({100 * (w[2] / w[3] - 1):+.1f} %)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"groups": rows, "worse": worse}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
