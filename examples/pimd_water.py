"""Quantum nuclei in liquid water at 300 K: path-integral MD with i-PI and a CACE model.

Runs NVT path-integral MD of the 64-molecule water box shipped with the package (water-64),
then reports the centroid-virial quantum kinetic energy per atom of H and O (classical
nuclei would give 3/2 kT = 0.039 eV at 300 K) and the O-O and O-H radial distribution
functions over all beads, and plots them to pimd_water.png in the output folder.

    python examples/pimd_water.py                  # 32 beads, 2000 steps of 0.5 fs (hours on a CPU)
    python examples/pimd_water.py --fast           # 2 beads, 10 steps: a quick check that it all runs
    python examples/pimd_water.py --model my.pt    # any cace_calc model file for H and O

It uses the pretrained ``water`` model; until that model is installed, pass --model with a
model file (for instance one converted with ``cace-calc convert``); without one it says so and
exits (status 0 with --fast, 1 otherwise).
The same run from the shell: ``cace-calc pimd water-64 --model water --beads 32 --steps 2000``.
"""

import argparse
import sys
from pathlib import Path

import ase.io
import numpy as np
from _common import find_model, is_fast
from ase import units

from cace_calc.data import resolve_structure_file
from cace_calc.pimd import run_pimd
from cace_calc.rdf import radial_distribution


def plot(res, rdfs, path: Path, temperature: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    t_fs = res.time_ps * 1000
    for sym, ke in res.kinetic_energy_per_atom.items():
        ax1.plot(t_fs, ke * 1000, label=f"{sym}: quantum (centroid virial)")
    ax1.axhline(1.5 * units.kB * temperature * 1000, color="k", ls="--", label="classical 3/2 kT")
    ax1.set(xlabel="time (fs)", ylabel="kinetic energy per atom (meV)", title="nuclear kinetic energy")
    ax1.legend()
    for (label, (r, g)) in rdfs.items():
        ax2.plot(r, g, label=label)
    ax2.set(xlabel="r (A)", ylabel="g(r)", title=f"RDF over all {res.n_beads} beads", xlim=(0.6, 6.0))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="water", help="pretrained model name or model file (default water)")
    parser.add_argument("--structure", default="water-64",
                        help="start structure: a file (its first frame) or a shipped structure name (water-64)")
    parser.add_argument("--beads", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--drivers", type=int, default=1, help="socket driver processes")
    parser.add_argument("--inprocess", action="store_true", help="model inside i-PI, all beads in one call")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--out", default="pimd-water", help="output folder (must not hold a run)")
    parser.add_argument("--fast", action="store_true", help="2 beads, 10 steps")
    args = parser.parse_args(argv)
    fast = is_fast(args)
    if fast:
        args.beads, args.steps = 2, 10
    model = find_model(args.model, "H and O")
    if model is None:
        return 0 if fast else 1

    atoms = ase.io.read(resolve_structure_file(args.structure), index=0)
    stride = max(1, args.steps // 100)
    res = run_pimd(atoms, model, args.out, mode="inprocess" if args.inprocess else "socket",
                   drivers=args.drivers, device=args.device, dtype=args.dtype, beads=args.beads,
                   temperature=args.temperature, steps=args.steps, timestep_fs=args.timestep,
                   tau_fs=100.0, trajectory_stride=stride)

    skip = len(res.step) // 5  # equilibration
    avg = res.averages(skip=skip)
    kt = 1.5 * units.kB * args.temperature
    print(f"\n{len(atoms)} atoms, {res.n_beads} beads, {args.steps} steps of {args.timestep} fs at "
          f"{args.temperature} K (averages after the first {skip} outputs):")
    for sym in ("H", "O"):
        ke = avg[f"kinetic_energy_per_atom({sym})"]
        print(f"  quantum kinetic energy of {sym}: {ke * 1000:7.1f} meV/atom "
              f"({ke / kt:.2f} x classical {kt * 1000:.1f} meV)")
    print(f"  temperature {avg['temperature']:.0f} K, potential energy {avg['potential_energy']:.3f} eV, "
          f"pressure {avg['pressure']:.3f} GPa")

    frames = []
    for bead in range(res.n_beads):
        traj = res.read_trajectory(bead)
        frames += traj[len(traj) // 5:]
    rdfs = {"O-O": radial_distribution(frames, "O", "O", r_max=6.0),
            "O-H": radial_distribution(frames, "O", "H", r_max=6.0)}
    def peak(label, lo, hi):
        r, g = rdfs[label]
        sel = (r > lo) & (r < hi)
        return r[sel][np.argmax(g[sel])]

    print(f"  O-O RDF first peak at {peak('O-O', 2.0, 3.5):.2f} A; O-H RDF peaks at "
          f"{peak('O-H', 0.6, 1.3):.2f} A (covalent) and {peak('O-H', 1.3, 2.5):.2f} A (hydrogen bond)")
    png = Path(args.out) / "pimd_water.png"
    plot(res, rdfs, png, args.temperature)
    print(f"wrote {png}; trajectories: {args.out}/centroid.extxyz and {args.out}/simulation.pos_*.extxyz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
