"""The collision-cascade target (issue 23): a 1 keV primary knock-on atom in 1,024-atom bcc W with
the pretrained ``nbmotaw`` model, the first 0.1 ps of NVE (the ballistic phase) with a time step
that keeps the fastest atom below 0.03 A per step. Passes when the total energy drifts by at
most 2 eV and no two atoms come closer than 0.6 A.

Runs examples/cascade_lammps.py (LAMMPS, 2 MPI ranks: about a minute on 2 cores) or, with
--engine ase, examples/cascade.py with these settings, prints the energy drift, the closest
approach, the Frenkel pairs at the end and the time per step, and exits with status 0 when the
target is met, 1 when it is not, 2 when the run failed.

    python scripts/cascade_target.py [--model nbmotaw] [--engine lammps|ase] [--element W|NbMoTaW]
                                     [--out cascade-target]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TARGET = {"size": 8, "energy_ev": 1000.0, "time_ps": 0.1, "xmax_a": 0.03}
MAX_DRIFT_EV = 2.0
MIN_DISTANCE_A = 0.6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nbmotaw", help="pretrained model name or model file (nbmotaw)")
    parser.add_argument("--engine", choices=["lammps", "ase"], default="lammps", help="lammps (default) or ase")
    parser.add_argument("--element", choices=["W", "NbMoTaW"], default="W", help="W (the target) or NbMoTaW")
    parser.add_argument("--np", type=int, default=2, help="MPI ranks for LAMMPS (2)")
    parser.add_argument("--out", default="cascade-target", help="output folder (cascade-target)")
    args = parser.parse_args(argv)

    script = EXAMPLES / ("cascade_lammps.py" if args.engine == "lammps" else "cascade.py")
    cmd = [sys.executable, str(script), "--model", args.model, "--element", args.element,
           "--size", str(TARGET["size"]), "--energy-ev", str(TARGET["energy_ev"]),
           "--time-ps", str(TARGET["time_ps"]), "--xmax", str(TARGET["xmax_a"]), "--out", args.out]
    if args.engine == "lammps":
        cmd += ["--np", str(args.np)]
    if subprocess.run(cmd, check=False).returncode != 0:
        print("cascade_target: the run failed", file=sys.stderr)
        return 2
    s = json.loads((Path(args.out) / "summary.json").read_text())
    drift_ok = s["energy_drift_max_ev"] <= MAX_DRIFT_EV
    distance_ok = s["closest_approach_a"] >= MIN_DISTANCE_A
    print(f"\ntarget: {s['pka_energy_ev']:g} eV PKA in {s['n_atoms']} atoms of {s['element']}, {s['time_ps']:.4f} ps "
          f"in {s['steps']} steps ({s['engine']}, {s['ms_per_step']:.1f} ms per step), model {s['model']}")
    print(f"  energy drift: largest {s['energy_drift_max_ev']:.3f} eV, at the end {s['energy_drift_ev']:+.3f} eV "
          f"(limit {MAX_DRIFT_EV:g} eV): {'ok' if drift_ok else 'FAILED'}")
    print(f"  closest approach: {s['closest_approach_a']:.3f} A at {1e3 * s['closest_approach_time_ps']:.1f} fs "
          f"(limit {MIN_DISTANCE_A:g} A): {'ok' if distance_ok else 'FAILED'}")
    print(f"  at {s['time_ps']:.2f} ps: {s['frenkel_pairs']} Frenkel pairs (Wigner-Seitz), "
          f"{s['displaced_atoms']} atoms displaced > {s['displaced_threshold_a']} A")
    print("target met" if drift_ok and distance_ok else "target NOT met")
    return 0 if drift_ok and distance_ok else 1


if __name__ == "__main__":
    sys.exit(main())
