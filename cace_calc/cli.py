"""The ``cace-calc`` command line. Each subcommand has ``add_<name>(subparsers)`` and
``run_<name>(args)``; heavy imports happen inside ``run_*``."""

from __future__ import annotations

import argparse
import sys


def add_convert(sub):
    p = sub.add_parser(
        "convert", help="convert a model trained with the original CACE code",
        description="Convert a model saved by the original CACE code (a pickled torch module) into a "
                    "cace_calc model file. The original package is not needed; no code from the file runs.")
    p.add_argument("original", help="the original model file (.pth)")
    p.add_argument("output", help="the cace_calc model file to write (.pt)")
    p.add_argument("--e0", metavar="JSON", help='per-element reference energies in eV, {"Z": value}, '
                                                 "added to the energy (the original files store none)")
    p.set_defaults(run=run_convert)


def run_convert(args) -> int:
    from .checkpoint import save_model
    from .convert import convert_original

    model = convert_original(args.original, e0=args.e0)
    path = save_model(model, args.output)
    cfg = model.config
    from ase.data import chemical_symbols

    print(f"wrote {path}: elements {' '.join(chemical_symbols[z] for z in cfg.elements)}, "
          f"cutoff {cfg.cutoff} A, l_max {cfg.l_max}, nu_max {cfg.nu_max}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    return 0


def add_info(sub):
    p = sub.add_parser("info", help="version, device and the available models",
                       description="Print the version, the compute device and the pretrained models.")
    p.set_defaults(run=run_info)


def run_info(args) -> int:
    import torch

    from . import __version__
    from .checkpoint import available_models, load_model

    print(f"cace_calc {__version__}, torch {torch.__version__}, "
          f"CUDA {'available: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'not available'}")
    names = available_models()
    print("pretrained models:" if names else "pretrained models: none installed")
    for name in names:
        m = load_model(name)
        from ase.data import chemical_symbols

        elems = " ".join(chemical_symbols[z] for z in m.config.elements)
        print(f"  {name}: {elems}, cutoff {m.cutoff} A, {m.metadata.get('description', '')}")
    return 0


def add_train(sub):
    p = sub.add_parser(
        "train", help="fit a model to energies, forces and stress from a YAML recipe",
        description="Fit a CACE model from a YAML recipe (see cace_calc.train.config for its keys). "
                    "Writes checkpoint.pt, model.pt (best EMA weights, recipe and errors in its "
                    "metadata), log.jsonl and metrics.json to the recipe's output folder.")
    p.add_argument("config", help="the YAML training recipe")
    p.add_argument("--resume", action="store_true", help="continue the run in the output folder")
    p.add_argument("--output", help="output folder (overrides the recipe's)")
    p.add_argument("--epochs", type=int, help="number of epochs (overrides the recipe's)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (overrides the recipe's)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    import torch

    from .train import TrainConfig, train

    cfg = TrainConfig.from_yaml(args.config)
    if args.output:
        cfg.output = args.output
    if args.epochs:
        cfg.training.epochs = args.epochs
    if args.device:
        cfg.training.device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg.validate()
    train(cfg, resume=args.resume)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cace-calc", description="CACE machine-learning potentials.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (add_info, add_convert, add_train):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cace-calc``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    from .errors import CalculatorSetupError

    try:
        return args.run(args)
    except (CalculatorSetupError, ValueError, OSError) as e:
        print(f"cace-calc {sys.argv[1] if len(sys.argv) > 1 else ''}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
