"""The ``cace-calc`` command line. Each subcommand has ``add_<name>(subparsers)`` and
``run_<name>(args)`` in its own module; heavy imports happen inside ``run_*``.

``app`` builds the parser and holds :func:`main`; ``_common`` has what several commands share.
The names below are re-exported so that ``from cace_calc.cli import ...`` keeps working."""

from __future__ import annotations

from ._common import (
    _DEVICE_HELP,
    _MODEL_HELP,
    _STRUCTURE_HELP,
    _add_model_options,
    _check_common_options,
    _error,
    _Formatter,
    _Parser,
    _report_warnings,
)
from .analysis import add_elastic, add_phonons, run_elastic, run_phonons
from .app import COMMANDS, build_parser, main
from .convert import add_convert, run_convert
from .defects import add_defects, run_defects
from .eval import add_eval, run_eval
from .info import add_info, run_info
from .ipi import add_ipi, run_ipi
from .lammps import add_lammps, run_lammps_build, run_lammps_run
from .md import add_md, run_md
from .pimd import _print_force_uncertainty, add_pimd, run_pimd
from .train import add_finetune, add_train, run_finetune, run_train

__all__ = [
    "COMMANDS",
    "build_parser",
    "main",
    "add_convert",
    "add_defects",
    "add_elastic",
    "add_eval",
    "add_finetune",
    "add_info",
    "add_ipi",
    "add_lammps",
    "add_md",
    "add_phonons",
    "add_pimd",
    "add_train",
    "run_convert",
    "run_defects",
    "run_elastic",
    "run_eval",
    "run_finetune",
    "run_info",
    "run_ipi",
    "run_lammps_build",
    "run_lammps_run",
    "run_md",
    "run_phonons",
    "run_pimd",
    "run_train",
]
