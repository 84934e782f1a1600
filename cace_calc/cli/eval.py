"""``cace-calc eval``: predictions for structure files, errors against their labels, selection."""

from __future__ import annotations

from ._common import _DEVICE_HELP, _MODEL_HELP


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

    from ..evaluate import evaluate_structures, read_structures, select_uncertain

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
