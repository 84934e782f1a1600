"""``cace-calc md``: molecular dynamics with ASE (Langevin NVT or MTK NPT)."""

from __future__ import annotations

from ._common import _DEVICE_HELP, _MODEL_HELP


def add_md(sub):
    p = sub.add_parser(
        "md", help="molecular dynamics with ASE: Langevin NVT or MTK NPT",
        description="Run molecular dynamics of STRUCTURE with ASE: Langevin NVT (default) or isotropic "
                    "MTK NPT (--ensemble npt, cells periodic in all directions only). Velocities are drawn "
                    "at --temperature unless the structure has momenta. Writes md.log (ASE's MD log: time "
                    "in ps, energies in eV, temperature in K, stress in GPa for periodic cells) and md.traj "
                    "(ASE trajectory; ase.io.read('md/md.traj', ':')) to --out, overwriting earlier ones, "
                    "and prints the mean temperature and potential energy and the time per step.",
        epilog="examples:\n  cace-calc md water.xyz --model water --temperature 300 --steps 2000\n"
               "  cace-calc md water.xyz --model water --ensemble npt --pressure 0.0001 --out md-npt")
    p.add_argument("structure", help="start structure, any file ase.io.read reads")
    p.add_argument("--index", default="-1", help="frame of the structure file (default -1, the last)")
    p.add_argument("--model", required=True, help=_MODEL_HELP)
    p.add_argument("--temperature", type=float, default=300.0, metavar="K", help="temperature in K (300)")
    p.add_argument("--steps", type=int, default=1000, metavar="N", help="number of MD steps (1000)")
    p.add_argument("--timestep", type=float, default=0.5, metavar="FS", help="time step in fs (0.5)")
    p.add_argument("--ensemble", default="nvt", choices=["nvt", "npt"], help="nvt (default) or npt")
    p.add_argument("--pressure", type=float, metavar="GPA", help="pressure in GPa for --ensemble npt (default 0)")
    p.add_argument("--friction", type=float, default=0.01, metavar="1/FS",
                   help="Langevin friction in 1/fs for nvt (0.01)")
    p.add_argument("--tdamp", type=float, default=100.0, metavar="FS", help="npt thermostat time in fs (100)")
    p.add_argument("--pdamp", type=float, default=1000.0, metavar="FS", help="npt barostat time in fs (1000)")
    p.add_argument("--out", default="md", metavar="DIR", help="output folder (default ./md)")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="write md.log every N steps (10)")
    p.add_argument("--traj-every", type=int, default=100, metavar="N", help="write md.traj every N steps (100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the velocities and the thermostat noise (0)")
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="model precision (default float32: faster, accurate enough for MD)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument("--max-uncertainty", type=float, metavar="EV_PER_A",
                   help="stop when an atom's force uncertainty (one sigma, eV/A) passes this, the last frame "
                        "written to md.traj (models with an uncertainty; they are always watched, and the "
                        "largest value and any pass of the model's own threshold are reported)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a terminal anyway)")
    p.set_defaults(run=run_md)


def run_md(args) -> int:
    import torch
    from ase import units

    from ..calculator import CACECalculator
    from ..evaluate import read_structures
    from ..md import run_md as _run_md

    if args.pressure is not None and args.ensemble != "npt":
        raise ValueError("--pressure goes with --ensemble npt")
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = read_structures(args.structure, index=args.index)
    if len(frames) != 1:
        raise ValueError(f"--index {args.index!r} selects {len(frames)} frames; give one (e.g. -1)")
    atoms = frames[0]
    calc = CACECalculator(args.model, device=args.device, dtype=args.dtype)
    if calc.model.n_heads > 1:
        calc.uncertainty = True  # cheap: the heads' spread, watched every step
    elif args.max_uncertainty is not None:
        raise ValueError(f"--max-uncertainty: model {args.model!r} carries no uncertainty (one readout head)")
    res = _run_md(atoms, calc, temperature=args.temperature, steps=args.steps, timestep=args.timestep,
                  ensemble=args.ensemble, pressure=args.pressure or 0.0, friction=args.friction,
                  tdamp=args.tdamp, pdamp=args.pdamp, out_dir=args.out, log_every=args.log_every,
                  traj_every=args.traj_every, seed=args.seed, progress=False if args.quiet else None,
                  max_uncertainty=args.max_uncertainty)
    what = f"{args.ensemble.upper()} {args.temperature:g} K" + (
        f", {args.pressure or 0.0:g} GPa" if args.ensemble == "npt" else "")
    print(f"{what}: {res.steps} steps of {args.timestep:g} fs ({res.steps * args.timestep / 1000:g} ps), "
          f"{len(atoms)} atoms")
    print(f"  mean temperature {res.temperature_mean_k:.1f} K, mean potential energy "
          f"{res.potential_energy_mean_ev:.4f} eV (every {args.log_every} steps)")
    if args.ensemble == "npt":
        final = res.atoms
        density = final.get_masses().sum() * units._amu * 1e3 / (final.get_volume() * 1e-24)
        print(f"  final volume {final.get_volume():.2f} A^3, density {density:.4f} g/cm^3")
    if res.max_force_uncertainty is not None:
        print(f"  largest force uncertainty {res.max_force_uncertainty:.3f} eV/A (one sigma, any atom, any step)")
    if res.stopped_at_step is not None:
        print(f"  stopped at step {res.stopped_at_step}: the last frame is in {res.trajectory_file}")
    print(f"  {res.ms_per_step:.2f} ms per step ({len(atoms) * 1e3 / max(res.ms_per_step, 1e-9):.0f} "
          f"atom-steps/s) on {calc.device}, {args.dtype}")
    print(f"wrote {res.log_file} (every {args.log_every} steps) and {res.trajectory_file} "
          f"(every {args.traj_every} steps)")
    return 0
