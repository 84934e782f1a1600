"""A collision cascade with ASE: a primary knock-on atom (PKA) in bcc W or in the NbMoTaW alloy.

A perfect bcc cell at 0 K (W, or the equimolar NbMoTaW alloy); the W atom on the site at the
centre gets --energy-ev of kinetic energy along [1 3 5] (a high-index direction: no channelling),
the other atoms share the recoil so that the cell does not drift. Then NVE with velocity Verlet
and an adaptive time step: before every step the step is chosen so that no atom moves more than
--xmax (0.03 A), the rule of LAMMPS' `fix dt/reset` (capped at --dt-max, 1 fs). Every step it
records the total energy, the largest kinetic energy of one atom and the closest pair of atoms
(minimum image); at the end it counts the damage against the perfect lattice: Wigner-Seitz
vacancies and interstitials (Frenkel pairs), atoms off their own site, atoms displaced more than
0.9 A. Writes summary.json, series.csv (every step) and cascade.png to --out.

    python examples/cascade.py [--model nbmotaw] [--element W|NbMoTaW] [--energy-ev 1000]
                               [--size 8] [--time-ps 0.1] [--out cascade-W] [--fast]

The defaults are the ballistic phase of a 1 keV cascade in 1,024 atoms (0.1 ps, about 630
steps: about a minute on 2 CPU cores; examples/cascade_lammps.py runs the same in LAMMPS).
Damage counted at 0.1 ps is the peak of the ballistic phase, not the surviving defects, which
need picoseconds of cooling in a larger cell. The model needs a short-range core (the pretrained
models carry a ZBL core; see docs/short-range.md): without it nothing keeps
atoms apart at keV energies. --fast: 54 W atoms (128 for the alloy), 200 eV, 0.03 ps.
"""

import os

# torch's OpenMP threads otherwise spin while they wait: on a machine busy with other work a step
# took 25x as long (2 s against 87 ms for 1,024 atoms on 2 cores); must be set before torch starts
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _cascade import Series, add_arguments, adaptive_dt, build_cell, centre_atom, closest_pair, \
    count_defects, pka_velocities, report, settings, summarise  # noqa: E402
from _common import find_model, is_fast  # noqa: E402
from ase import units  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from cace_calc import CACECalculator  # noqa: E402

PS = 1000.0 * units.fs  # one ps in ASE's time unit
MVV2E = units._amu * 1e4 / units._e  # 1 amu (A/ps)^2 in eV with ASE's constants


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, "54 W atoms (128 for the alloy), 200 eV, 0.03 ps: a quick check")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                        help="float64 (default: the energy is conserved to well below an eV)")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    run = settings(args, fast)
    model = find_model(args.model, "W (and Nb, Mo, Ta for the alloy)")
    if model is None:
        return 0 if fast else 1
    out = Path(args.out or f"cascade-{args.element}")

    atoms = build_cell(args.element, run["size"], args.lattice, args.seed)
    sites = atoms.positions.copy()  # the perfect lattice: the Wigner-Seitz cells
    pka = centre_atom(atoms, "W")
    masses = atoms.get_masses()
    atoms.set_velocities(pka_velocities(masses, pka, run["energy_ev"], args.direction, MVV2E) / PS)
    atoms.calc = CACECalculator(model, device=args.device, dtype=args.dtype)
    print(f"{len(atoms)} atoms ({atoms.get_chemical_formula()}), PKA atom {pka} ({atoms[pka].symbol}) with "
          f"{run['energy_ev']:g} eV along {list(args.direction)}, {run['time_ps']:g} ps of NVE, "
          f"model {model} on {atoms.calc.device}")

    dyn = VelocityVerlet(atoms, timestep=units.fs)
    forces = atoms.get_forces(md=True)
    series = Series()
    t, start = 0.0, None

    def record():
        v = atoms.get_velocities() * PS  # A/ps
        dt = adaptive_dt(v, forces, masses, args.xmax, None, args.dt_max * 1e-3, MVV2E)
        ke = 0.5 * masses * (atoms.get_velocities() ** 2).sum(axis=1)  # eV
        series.add(t, dt, atoms.get_potential_energy() + ke.sum(), ke.max(),
                   closest_pair(atoms.positions, atoms.cell.array)[0])
        return dt

    dt = record()
    start = time.perf_counter()
    while t < run["time_ps"]:
        dyn.dt = dt * PS
        forces = dyn.step(forces)
        t += dt
        dt = record()
    seconds = time.perf_counter() - start

    defects = count_defects(sites, sites, atoms.positions, atoms.cell.array)
    summary = summarise(series, defects, engine="ase", model=str(model), element=args.element,
                        n_atoms=len(atoms), pka_index=pka, pka_energy_ev=run["energy_ev"],
                        direction=list(args.direction), xmax_a=args.xmax, dt_cap_fs=args.dt_max,
                        dtype=args.dtype, device=str(atoms.calc.device), wall_s=seconds,
                        ms_per_step=1e3 * seconds / max(1, len(series.time) - 1))
    report(summary, out, series, f"{run['energy_ev']:g} eV PKA in {args.element} ({len(atoms)} atoms), ASE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
