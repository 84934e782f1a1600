"""``cace-calc pimd``: path-integral MD with i-PI and its summary."""

from __future__ import annotations

from ._common import _error


def add_pimd(sub):
    p = sub.add_parser(
        "pimd", help="path-integral (or classical, --beads 1) MD with i-PI",
        description="Write an i-PI input for NVT (or NPT with --pressure) path-integral MD of STRUCTURE, "
                    "run i-PI with CACE drivers, and print the averages: potential energy, centroid-virial "
                    "kinetic energy per atom of each element, temperature, pressure, volume (with "
                    "--uncertainty also i-PI's committee uncertainty and the largest force uncertainty). "
                    "Outputs (simulation.out, trajectories as extended XYZ in Angstrom, logs) go to --out.",
        epilog="examples:\n  cace-calc pimd water.xyz --model water --beads 32 --steps 2000\n"
               "  cace-calc pimd water.xyz --model water --beads 8 --inprocess --device cuda --out pimd-gpu\n"
               "  cace-calc pimd water.xyz --model water --beads 1 --thermostat svr --out classical\n"
               "  cace-calc pimd water.xyz --model MODEL_WITH_HEADS --beads 8 --uncertainty --out pimd-committee\n"
               "  cace-calc pimd water.xyz --model MODEL_WITH_HEADS --beads 8 --max-uncertainty 0.5 --out pimd-guarded")
    p.add_argument("structure", help="start structure, any file ase.io.read reads")
    p.add_argument("--index", default="-1", help="frame of the structure file (default -1, the last)")
    p.add_argument("--model", default="water", help="pretrained model name or model file (default water)")
    p.add_argument("--beads", type=int, default=32, metavar="N", help="path-integral beads (default 32; 1 = classical)")
    p.add_argument("--temperature", type=float, default=300.0, metavar="K", help="temperature in K (300)")
    p.add_argument("--steps", type=int, default=1000, metavar="N", help="number of MD steps (1000)")
    p.add_argument("--timestep", type=float, default=0.5, metavar="FS", help="time step in fs (0.5)")
    p.add_argument("--pressure", type=float, metavar="GPA", help="pressure in GPa: runs NPT (default: NVT)")
    p.add_argument("--thermostat", default="pile_l", choices=["pile_l", "pile_g", "svr", "langevin"],
                   help="thermostat (pile_l; svr and langevin only with --beads 1)")
    p.add_argument("--tau", type=float, default=100.0, metavar="FS", help="thermostat time constant in fs (100)")
    p.add_argument("--seed", type=int, default=31415, help="random seed (31415)")
    p.add_argument("--stride", type=int, default=10, metavar="N", help="write trajectories every N steps (10)")
    p.add_argument("--out", default="pimd", metavar="DIR", help="output folder (default ./pimd); must not hold a run")
    p.add_argument("--drivers", type=int, default=1, metavar="N", help="number of driver processes (1)")
    p.add_argument("--inprocess", action="store_true",
                   help="run the model inside i-PI, all beads in one batched call (no socket drivers)")
    p.add_argument("--device", default="auto", nargs="+",
                   help="device(s) of the drivers, used in turn: cpu, cuda, cuda:0 cuda:1, auto (default)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="model precision (float64)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch in each driver")
    p.add_argument("--uncertainty", action="store_true",
                   help="run i-PI's committee (<ffcommittee>), one member per readout head of the model (needs "
                        "several heads), alpha = the model's calibrated force factor; reports the committee "
                        "uncertainty with the averages and writes committee_pot.dat for i-pi-committee-reweight. "
                        "The drivers also watch the calibrated per-atom force uncertainty of every call (one sigma, "
                        "eV/A: alpha x the members' force spread), log the largest of each call to uncertainty.log, "
                        "say once when it passes the model's threshold (set for the cheap estimate of cace-calc md, "
                        "used as is) and report the largest of the run")
    p.add_argument("--max-uncertainty", type=float, metavar="EV_PER_A",
                   help="stop i-PI after the step in which an atom's force uncertainty (one sigma, eV/A) passes "
                        "this (implies --uncertainty): the last configuration, every bead, goes to final.extxyz "
                        "(from i-PI's RESTART), the structures that passed to uncertain.extxyz")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_pimd)


def run_pimd(args) -> int:
    from ..evaluate import read_structures
    from ..pimd import run_pimd as _run_pimd

    atoms = read_structures(args.structure, index=str(int(args.index)))[0]
    try:
        res = _run_pimd(atoms, args.model, args.out, mode="inprocess" if args.inprocess else "socket",
                        drivers=args.drivers, device=args.device, dtype=args.dtype, threads=args.threads,
                        progress=not args.quiet, beads=args.beads, temperature=args.temperature,
                        steps=args.steps, timestep_fs=args.timestep, pressure_gpa=args.pressure,
                        thermostat=args.thermostat, tau_fs=args.tau, seed=args.seed,
                        trajectory_stride=args.stride, uncertainty=args.uncertainty,
                        max_uncertainty=args.max_uncertainty)
    except RuntimeError as e:  # i-PI or a driver failed: its message quotes the end of that log
        _error("pimd", e)
        return 1
    skip = len(res.step) // 5
    print(f"{res.n_beads} beads, {int(res.step[-1])} steps; averages over the last {len(res.step) - skip} "
          f"of {len(res.step)} outputs:")
    for key, value in res.averages(skip=skip).items():
        unit = {"temperature": "K", "pressure": "GPa", "volume": "A^3"}.get(key, "eV")
        unit = "eV/atom" if "per_atom" in key and "kinetic" not in key else unit
        print(f"  {key:34s} {value:14.6f} {unit}")
    committee = ""
    if res.committee_energies is not None:
        print(f"committee of {res.committee_energies.shape[2]} members (the model's heads); uncertainty: i-PI's "
              "committee_uncertainty (sample std of the members' energies, scaled by its alpha)")
        committee = (", simulation.committee_K (bead K: uncertainty, members), committee_pot.dat (for reweighting), "
                     f"{'uncertainty.log' if args.drivers == 1 else 'uncertainty-K.log (driver K)'} (largest force "
                     "sigma of each driver call)")
    if res.force_uncertainty is not None:
        _print_force_uncertainty(res.force_uncertainty, args, int(res.step[-1]))
    print(f"outputs in {res.directory}: simulation.out (properties), centroid.extxyz (centroid trajectory), "
          f"simulation.pos_K.extxyz (bead K), input.xml (the i-PI input){committee}")
    return 0


def _print_force_uncertainty(log, args, last_step: int) -> None:
    """pimd's summary of the drivers' force uncertainty watch (:class:`cace_calc.ipi.watch.UncertaintyLog`)."""
    if args.drivers == 1:  # handed every bead per call
        where = f"driver call {log.call} (i-PI step {log.call} unless it split a step), bead {log.structure}"
    else:
        where = f"call {log.call} in {log.log.name}, structure {log.structure}"
    print(f"  {'largest force uncertainty':34s} {log.largest:14.6f} eV/A on atom {log.atom} ({log.symbol}), "
          f"{where}; one sigma: alpha x the members' force spread")
    if log.threshold is None:
        print("  the model has no force uncertainty threshold")
    else:
        state = "passed (see the warning above)" if log.passed_threshold else "not passed"
        print(f"  the model's threshold {log.threshold:.3f} eV/A (set for the cheap estimate): {state}")
    if log.stopped:
        print(f"  stopped by --max-uncertainty {args.max_uncertainty:g} eV/A after step {last_step} of {args.steps}: "
              "the last configuration (every bead) is in final.extxyz, the structures that passed in "
              "uncertain.extxyz")
