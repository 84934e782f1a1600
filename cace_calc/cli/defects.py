"""``cace-calc defects``: vacancy and self-interstitial formation energies of bcc metals."""

from __future__ import annotations

from ._common import _DEVICE_HELP, _MODEL_HELP


def add_defects(sub):
    from ..defects import DEFECT_KINDS

    p = sub.add_parser(
        "defects", help="vacancy and self-interstitial formation energies of bcc metals",
        description="For each element: a cubic bcc supercell at the model's own lattice constant (the "
                    "conventional cell relaxed first), one atom removed (vacancy) or added (dumbbells along "
                    "<111>, <110>, <100>; octahedral and tetrahedral sites), positions relaxed at fixed cell; "
                    "prints the formation energies E_f = E(defect cell) - (N +- 1)/N E(perfect cell) in eV and "
                    "writes them, with the relaxed cells, when --out is given.",
        epilog="examples:\n  cace-calc defects W Mo --model nbmotaw\n"
               "  cace-calc defects Ta --model nbmotaw --kinds vacancy 111 --repeat 5 --out defects-Ta")
    p.add_argument("elements", nargs="+", metavar="ELEMENT", help="bcc elements, e.g. W Mo")
    p.add_argument("--model", required=True, help=_MODEL_HELP)
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="model precision (float64)")
    p.add_argument("--kinds", nargs="+", default=list(DEFECT_KINDS), choices=DEFECT_KINDS, metavar="KIND",
                   help=f"defects to compute, of {' '.join(DEFECT_KINDS)} (default: all)")
    p.add_argument("--repeat", type=int, default=4, help="conventional cells per side (default 4: 128 sites)")
    p.add_argument("--fmax", type=float, default=0.01, help="force tolerance of the relaxations in eV/A (0.01)")
    p.add_argument("--out", metavar="DIR", help="write defects.json and the relaxed cells (extxyz) here")
    p.set_defaults(run=run_defects)


def run_defects(args) -> int:
    import json
    import warnings
    from pathlib import Path

    from ..bulk import resolve_calculator
    from ..defects import point_defects
    from ._common import _report_warnings

    if args.repeat < 2:
        raise ValueError(f"--repeat must be at least 2, got {args.repeat}")
    if not args.fmax > 0:
        raise ValueError(f"--fmax must be positive, got {args.fmax}")
    calc = resolve_calculator(args.model, device=args.device, dtype=args.dtype)
    results = {}
    print(f"{'element':8s}" + "".join(f"{k:>13s}" for k in args.kinds) + "   (formation energies, eV)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for element in args.elements:
            res = point_defects(calc, element, args.kinds, repeat=args.repeat, fmax=args.fmax)
            results[element] = res
            print(f"{element:8s}" + "".join(f"{res[k].formation_energy:13.3f}" for k in args.kinds), flush=True)
    _report_warnings(caught)
    if args.out:
        import ase.io

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        summary = {el: {k: {"formation_energy_ev": r.formation_energy, "n_atoms": r.n_atoms,
                            "max_displacement_a": r.max_displacement} for k, r in res.items()}
                   for el, res in results.items()}
        (out / "defects.json").write_text(json.dumps({"model": args.model, "repeat": args.repeat,
                                                      "fmax_ev_per_a": args.fmax, "defects": summary}, indent=1))
        for el, res in results.items():
            ase.io.write(out / f"{el}-relaxed.extxyz", [r.structure for r in res.values()], format="extxyz")
        print(f"wrote {out / 'defects.json'} and the relaxed cells")
    return 0
