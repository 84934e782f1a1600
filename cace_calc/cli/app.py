"""The ``cace-calc`` parser (every command's ``add_*``) and :func:`main`, which runs a command and
turns its failures into one line and an exit status."""

from __future__ import annotations

import argparse
import os
import sys

from ._common import _check_common_options, _error, _Parser
from .analysis import add_elastic, add_phonons
from .convert import add_convert
from .defects import add_defects
from .eval import add_eval
from .info import add_info
from .ipi import add_ipi
from .lammps import add_lammps
from .md import add_md
from .pimd import add_pimd
from .train import add_finetune, add_train

COMMANDS = (add_info, add_eval, add_md, add_pimd, add_ipi, add_phonons, add_elastic, add_defects, add_train, add_finetune,
            add_convert, add_lammps)


def build_parser() -> argparse.ArgumentParser:
    """The ``cace-calc`` argument parser with all subcommands."""
    from .. import __version__

    parser = _Parser(
        prog="cace-calc",
        description="CACE machine-learning interatomic potentials: evaluate structures, run MD and "
                    "path-integral MD (i-PI), compute phonons and elastic constants, train and convert "
                    "models. A model is a pretrained name (see `cace-calc info`) or a model file.",
        epilog="Run `cace-calc COMMAND --help` for the options of a command.\n\nexamples:\n"
               "  cace-calc info\n  cace-calc eval test.xyz --model water\n"
               "  cace-calc md water.xyz --model water --steps 2000")
    parser.add_argument("--version", action="version", version=f"cace_calc {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cace-calc``; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    from ..errors import CalculationFailed, CalculatorSetupError

    try:
        _check_common_options(args)  # before any expensive work (loading, i-PI, training)
        return args.run(args)
    except (CalculatorSetupError, CalculationFailed, ValueError, OSError) as e:
        _error(args.command, e)
        return 1
    except KeyboardInterrupt:
        print(f"cace-calc {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # anything unforeseen still ends in one line
        if os.environ.get("CACE_CALC_TRACEBACK"):
            raise
        _error(args.command, e, f"{type(e).__name__}: ", " (set CACE_CALC_TRACEBACK=1 for the traceback)")
        return 1
