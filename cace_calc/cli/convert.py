"""``cace-calc convert``: a model of the original CACE code to a cace_calc model file."""

from __future__ import annotations


def add_convert(sub):
    p = sub.add_parser(
        "convert", help="convert a model trained with the original CACE code",
        description="Convert a model saved by the original CACE code (a pickled torch module) into a "
                    "cace_calc model file. The original package is not needed; no code from the file runs.",
        epilog="example:\n  cace-calc convert cace_water_cacefit.pth water.pt --e0 cace_water_cacefit_e0.json")
    p.add_argument("original", help="the original model file (.pth)")
    p.add_argument("output", help="the cace_calc model file to write (.pt)")
    p.add_argument("--e0", metavar="JSON", help='JSON file of per-element reference energies in eV, '
                                                 '{"Z": value, ...}, added to the energy (the original files '
                                                 "store none)")
    p.set_defaults(run=run_convert)


def run_convert(args) -> int:
    from pathlib import Path

    from ..checkpoint import save_model
    from ..convert import convert_original

    if Path(args.output).is_dir():
        raise ValueError(f"output {args.output!r} is a directory; give a file name, e.g. "
                         f"{str(Path(args.output) / 'model.pt')!r}")
    model = convert_original(args.original, e0=args.e0)
    path = save_model(model, args.output)
    cfg = model.config
    from ase.data import chemical_symbols

    print(f"wrote {path}: elements {' '.join(chemical_symbols[z] for z in cfg.elements)}, "
          f"cutoff {cfg.cutoff} A, l_max {cfg.l_max}, nu_max {cfg.nu_max}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    return 0
