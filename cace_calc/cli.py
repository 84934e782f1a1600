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


_STRUCTURE_HELP = ("a structure file ase.io.read reads (last frame) or a shorthand KIND:SYMBOL[:A], KIND one of "
                   "sc fcc bcc hcp diamond, A the lattice constant in A (primitive cell), e.g. bcc:W:3.17")


def _add_model_options(p):
    p.add_argument("--model", required=True, help="pretrained model name (see `cace-calc info`) or model file")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="model precision (default float64; keep it for phonons and elastic constants)")
    p.add_argument("--fmax", type=float, default=1e-3, help="force tolerance of the relaxations in eV/A (1e-3)")
    p.add_argument("--no-relax", dest="relax", action="store_false",
                   help="use the structure as given (default: relax cell and positions first)")


def _report_warnings(caught) -> None:
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


def add_phonons(sub):
    p = sub.add_parser(
        "phonons", help="phonon bands, DOS and vibrational thermodynamics (phonopy)",
        description="Relax the structure, compute force constants by finite displacements in a supercell "
                    "(phonopy), the band structure along ASE's high-symmetry path, the DOS and the free "
                    "energy, entropy and heat capacity. Writes phonopy_params.yaml, band.yaml, total_dos.dat, "
                    "thermal_properties.yaml, bands_dos.png and thermal.png to --out and prints a summary. "
                    "Frequencies in THz; imaginary modes are reported as a warning.")
    p.add_argument("structure", help=_STRUCTURE_HELP)
    _add_model_options(p)
    p.add_argument("--supercell", type=int, nargs=3, default=[4, 4, 4], metavar=("NA", "NB", "NC"),
                   help="supercell repetitions of the (relaxed) input cell (default 4 4 4)")
    p.add_argument("--out", default="phonons", help="output folder (default ./phonons)")
    p.add_argument("--displacement", type=float, default=0.01, help="atomic displacement in A (0.01)")
    p.add_argument("--mesh", type=float, nargs="+", default=[40.0], metavar="M",
                   help="q mesh for DOS and thermodynamics: 3 integers or one length in A (default 40)")
    p.add_argument("--band-path", help="ASE band path string, e.g. GXWKGLUWLK,UX (default: ASE's for the lattice)")
    p.add_argument("--t-max", type=float, default=1000.0, help="highest temperature in K (1000)")
    p.add_argument("--t-step", type=float, default=10.0, help="temperature step in K (10)")
    p.set_defaults(run=run_phonons)


def run_phonons(args) -> int:
    import warnings

    import numpy as np

    from .bulk import read_structure
    from .phonons import compute_phonons

    if len(args.mesh) not in (1, 3):
        raise ValueError(f"--mesh takes 1 length or 3 integers, got {len(args.mesh)} values")
    mesh = args.mesh[0] if len(args.mesh) == 1 else [int(m) for m in args.mesh]
    if args.t_max < 0 or args.t_step <= 0:
        raise ValueError("--t-max must be >= 0 and --t-step > 0")
    atoms = read_structure(args.structure)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute_phonons(atoms, args.model, supercell=args.supercell, displacement=args.displacement,
                                 relax=args.relax, fmax=args.fmax, mesh=mesh, band_path=args.band_path,
                                 temperatures=np.arange(0.0, args.t_max + 1e-9, args.t_step), out_dir=args.out,
                                 device=args.device, dtype=args.dtype)
    print(result.table())
    _report_warnings(caught)
    return 0


def add_elastic(sub):
    p = sub.add_parser(
        "elastic", help="elastic constants, moduli and stability (matscipy); optional equation of state",
        description="Relax the structure, then fit the 6x6 elastic tensor (GPa, Voigt order xx yy zz yz xz xy) "
                    "to stress-strain data with internal relaxation; prints it with its fit uncertainty, the "
                    "Voigt-Reuss-Hill bulk and shear moduli, Young's modulus, Poisson ratio and the Born "
                    "stability check. --eos adds a Birch-Murnaghan E(V) fit (V0, E0, B0, B0').")
    p.add_argument("structure", help=_STRUCTURE_HELP)
    _add_model_options(p)
    p.add_argument("--delta", type=float, default=0.005, help="largest applied strain (0.005)")
    p.add_argument("--n-steps", type=int, default=5, help="strains per pattern, evenly spaced in +-delta (5)")
    p.add_argument("--symmetry", default="triclinic",
                   help="matscipy strain-pattern set: triclinic (default, no assumption), cubic, hexagonal, ...")
    p.add_argument("--eos", action="store_true", help="also fit a Birch-Murnaghan equation of state")
    p.add_argument("--eos-plot", metavar="PNG", help="write the E(V) plot to this file (implies --eos)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (for scripts)")
    p.set_defaults(run=run_elastic)


def run_elastic(args) -> int:
    import json
    import warnings

    from .bulk import read_structure, resolve_calculator
    from .elastic import birch_murnaghan_eos, elastic_constants

    atoms = read_structure(args.structure)
    calc = resolve_calculator(args.model, device=args.device, dtype=args.dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = elastic_constants(atoms, calc, relax=args.relax, delta=args.delta, n_steps=args.n_steps,
                                   fmax=args.fmax, symmetry=args.symmetry, progress=not args.json)
        eos = None
        if args.eos or args.eos_plot:
            eos = birch_murnaghan_eos(result.atoms, calc, relax=False, fmax=args.fmax, plot=args.eos_plot)
    if args.json:
        out = result.to_dict()
        if eos is not None:
            out["eos"] = eos.to_dict()
        print(json.dumps(out, indent=1))
    else:
        print(result.table())
        if eos is not None:
            print(eos.table())
            if eos.plot_file:
                print(f"  wrote {eos.plot_file}")
    _report_warnings(caught)
    return 0


def add_ipi(sub):
    p = sub.add_parser(
        "ipi", help="serve a running i-PI simulation as a force driver (socket client)",
        description="Connect to a running i-PI server and answer its force requests (energy, forces, "
                    "virial in i-PI's atomic units) until i-PI ends the run. Several drivers may serve "
                    "one run. i-PI sends no elements: give --template (same atom order as i-PI's input) "
                    "unless i-PI's <ffsocket> has <parameters>{symbols: OHH...}</parameters> (as written "
                    "by cace-calc pimd).")
    p.add_argument("--model", required=True, help="pretrained model name (see `cace-calc info`) or model file")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", metavar="NAME", help="unix socket NAME (the file /tmp/ipi_NAME, i-PI's <address>)")
    where.add_argument("--host", help="inet host name or address of the i-PI server")
    p.add_argument("--port", type=int, help="inet port of the i-PI server (with --host)")
    p.add_argument("--template", metavar="FILE", help="structure file with i-PI's atoms in the same order")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="model precision (float64)")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="keep trying to connect for S seconds while i-PI starts (default 0)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="give up when i-PI sends nothing for S seconds (default: wait as long as i-PI needs)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(run=run_ipi)


def run_ipi(args) -> int:
    import torch

    from .ipi import CACEDriver, DriverProtocolError

    if args.host is not None and args.port is None:
        raise ValueError("--host needs --port")
    if args.unix is not None and args.port is not None:
        raise ValueError("--port goes with --host, not with --unix")
    if args.threads:
        torch.set_num_threads(args.threads)
    driver = CACEDriver(args.model, template=args.template, device=args.device, dtype=args.dtype)
    try:
        n = driver.run(unix=args.unix, host=args.host, port=args.port, wait=args.wait, timeout=args.timeout)
    except DriverProtocolError as e:
        print(f"cace-calc ipi: error: {e}", file=sys.stderr)
        return 1
    print(f"i-PI ended the run; {n} structures evaluated")
    return 0


def add_pimd(sub):
    p = sub.add_parser(
        "pimd", help="path-integral (or classical, --beads 1) MD with i-PI",
        description="Write an i-PI input for NVT (or NPT with --pressure) path-integral MD of STRUCTURE, "
                    "run i-PI with CACE drivers, and print the averages: potential energy, centroid-virial "
                    "kinetic energy per atom of each element, temperature, pressure, volume. Outputs "
                    "(simulation.out, trajectories as extended XYZ in Angstrom, logs) go to --out.")
    p.add_argument("structure", help="start structure, any file ase.io.read reads")
    p.add_argument("--index", default="-1", help="frame of the structure file (default -1, the last)")
    p.add_argument("--model", default="water", help="pretrained model name or model file (default water)")
    p.add_argument("--beads", type=int, default=32, help="path-integral beads (default 32; 1 = classical)")
    p.add_argument("--temperature", type=float, default=300.0, help="temperature in K (300)")
    p.add_argument("--steps", type=int, default=1000, help="number of MD steps (1000)")
    p.add_argument("--timestep", type=float, default=0.5, help="time step in fs (0.5)")
    p.add_argument("--pressure", type=float, help="pressure in GPa: runs NPT (default: NVT)")
    p.add_argument("--thermostat", default="pile_l", choices=["pile_l", "pile_g", "svr", "langevin"],
                   help="thermostat (pile_l; svr and langevin only with --beads 1)")
    p.add_argument("--tau", type=float, default=100.0, help="thermostat time constant in fs (100)")
    p.add_argument("--seed", type=int, default=31415, help="random seed (31415)")
    p.add_argument("--stride", type=int, default=10, help="write trajectories every N steps (10)")
    p.add_argument("--out", default="pimd", help="output folder (default ./pimd); must not hold a run")
    p.add_argument("--drivers", type=int, default=1, help="number of driver processes (1)")
    p.add_argument("--inprocess", action="store_true",
                   help="run the model inside i-PI, all beads in one batched call (no socket drivers)")
    p.add_argument("--device", default="auto", nargs="+",
                   help="device(s) of the drivers, used in turn: cpu, cuda, cuda:0 cuda:1, auto (default)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="model precision (float64)")
    p.add_argument("--threads", type=int, help="CPU threads for torch in each driver")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_pimd)


def run_pimd(args) -> int:
    from ase.io import read

    from .pimd import run_pimd as _run_pimd

    atoms = read(args.structure, index=int(args.index))
    try:
        res = _run_pimd(atoms, args.model, args.out, mode="inprocess" if args.inprocess else "socket",
                        drivers=args.drivers, device=args.device, dtype=args.dtype, threads=args.threads,
                        progress=not args.quiet, beads=args.beads, temperature=args.temperature,
                        steps=args.steps, timestep_fs=args.timestep, pressure_gpa=args.pressure,
                        thermostat=args.thermostat, tau_fs=args.tau, seed=args.seed,
                        trajectory_stride=args.stride)
    except RuntimeError as e:
        print(f"cace-calc pimd: error: {e}", file=sys.stderr)
        return 1
    skip = len(res.step) // 5
    print(f"{res.n_beads} beads, {int(res.step[-1])} steps; averages over the last {len(res.step) - skip} "
          f"of {len(res.step)} outputs:")
    for key, value in res.averages(skip=skip).items():
        unit = {"temperature": "K", "pressure": "GPa", "volume": "A^3"}.get(key, "eV")
        print(f"  {key:34s} {value:14.6f} {unit}")
    print(f"outputs in {res.directory} (trajectories: simulation.xc.extxyz centroid, simulation.pos_*.extxyz beads)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cace-calc", description="CACE machine-learning potentials.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (add_info, add_convert, add_train, add_phonons, add_elastic, add_ipi, add_pimd):
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
