"""``cace-calc phonons`` and ``cace-calc elastic`` (with the equation of state)."""

from __future__ import annotations

from ._common import _STRUCTURE_HELP, _add_model_options, _report_warnings


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

    from ..bulk import read_structure
    from ..phonons import compute_phonons

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

    from ..bulk import read_structure, resolve_calculator
    from ..elastic import birch_murnaghan_eos, elastic_constants

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
