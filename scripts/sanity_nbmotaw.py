"""Physical sanity of a Nb-Mo-Ta-W model: bcc lattice constants and NVT MD at 1500 K.

1. The DFT lattice constant of each bcc element is taken from the training data itself: the
   pressure of its strained "Elastic" cells, fitted by a quadratic in volume, is zero at V0,
   a0 = (2 V0)^(1/3). The model's lattice constant comes from a cell relaxation (float64).
   For the random equimolar NbMoTaW solid solution (128 atoms; no quaternary structures are in
   the data) the reference is Vegard's law over the four DFT values.
2. NVT MD (Langevin, 1500 K) of 128-atom cells of each element and of the solid solution:
   stable means the temperature holds, no two atoms come closer than 1.8 A and the atoms
   stay on their lattice sites (RMS displacement below 0.6 A, no diffusion).

    python scripts/sanity_nbmotaw.py --model nbmotaw --ps 5 --out sanity/nbmotaw

Writes summary.json (the numbers the model card quotes) and sanity.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nbmotaw" / "nbmotaw_train.xyz"
ELEMENTS = ["Nb", "Mo", "Ta", "W"]
GPA = 160.21766208


def dft_lattice_constants(images=None) -> dict[str, float]:
    """bcc a0 (A) of each element where the DFT pressure of its Elastic cells vanishes
    (``images``: the data's structures, read from DATA when not given)."""
    import ase.io

    if images is None:
        images = ase.io.read(DATA, ":")
    out = {}
    for el in ELEMENTS:
        cells = [a for a in images if a.info.get("config_type") == f"{el}_Elastic"]
        v = np.array([a.get_volume() / len(a) for a in cells])
        p = np.array([-a.get_stress()[:3].mean() * GPA for a in cells])
        # P(V) is curved over the +-10 % volume range of these cells: a straight line would put
        # the zero ~0.2 % too high in a0; a quadratic (as a cubic) finds it within 1e-4 A
        roots = np.roots(np.polyfit(v, p, 2))
        v0 = [r.real for r in roots if abs(r.imag) < 1e-12 and v.min() <= r.real <= v.max()]
        out[el] = float((2 * v0[0]) ** (1 / 3))
    return out


def solid_solution(a: float, repeat: int = 4, seed: int = 0):
    """Random equimolar NbMoTaW on a bcc lattice, repeat^3 conventional cells."""
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=a, cubic=True).repeat(repeat)
    atoms.numbers = np.random.default_rng(seed).permutation(np.resize([41, 42, 73, 74], len(atoms)))
    return atoms


def relax_cubic(atoms, calc, fmax: float = 1e-4):
    """Relax cell and positions; returns the relaxed copy and its cubic lattice constant
    (A, per conventional cell)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calc
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=500)
    n_cells = len(atoms) / 2
    return atoms, float((atoms.get_volume() / n_cells) ** (1 / 3))


def nvt(atoms, calc, temperature: float, ps: float, timestep: float, seed: int, label: str) -> dict:
    """Langevin NVT; returns time series and stability numbers."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from tqdm import tqdm

    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep=timestep * units.fs, temperature_K=temperature,
                   friction=0.01 / units.fs, fixcm=False, rng=rng)
    ref = atoms.get_positions()
    n_steps = round(ps * 1000 / timestep)
    every = max(1, round(20 / timestep))
    t, temp, rmsd, dmin = [], [], [], []
    with tqdm(total=n_steps, unit="step", desc=f"{label} NVT {temperature:.0f} K", leave=False) as bar:
        for step in range(0, n_steps + 1, every):
            if step:
                dyn.run(every)
                bar.update(every)
            disp = atoms.get_positions() - ref
            t.append(step * timestep / 1000)
            temp.append(atoms.get_temperature())
            rmsd.append(float(np.sqrt((disp**2).sum(axis=1).mean())))
            d = atoms.get_all_distances(mic=True)
            dmin.append(float(d[~np.eye(len(atoms), dtype=bool)].min()))
    half = len(temp) // 2
    res = {"time_ps": t, "temperature_k": temp, "rmsd_a": rmsd, "min_distance_a": dmin,
           "temperature_mean_k": float(np.mean(temp[half:])), "rmsd_final_a": rmsd[-1],
           "rmsd_max_a": max(rmsd), "min_distance_min_a": min(dmin)}
    res["stable"] = bool(abs(res["temperature_mean_k"] - temperature) < 0.05 * temperature
                         and res["min_distance_min_a"] > 1.8 and res["rmsd_max_a"] < 0.6)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="nbmotaw", help="pretrained name or model file (default nbmotaw)")
    p.add_argument("--ps", type=float, default=5.0, help="MD length per system in ps (default 5)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs (default 2)")
    p.add_argument("--temperature", type=float, default=1500.0, help="K (default 1500)")
    p.add_argument("--repeat", type=int, default=4, help="conventional cells per side of the MD cells (4: 128 atoms)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="sanity/nbmotaw")
    args = p.parse_args(argv)

    from ase.build import bulk

    from cace_calc import CACECalculator

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calc64 = CACECalculator(args.model, device=args.device, dtype="float64")
    calc32 = CACECalculator(args.model, device=args.device, dtype="float32")
    dft = dft_lattice_constants()
    dft["NbMoTaW"] = float(np.mean([dft[e] for e in ELEMENTS]))  # Vegard's law
    lattice, relaxed = {}, {}
    for el in ELEMENTS:
        relaxed[el], lattice[el] = relax_cubic(bulk(el, "bcc", a=dft[el], cubic=True), calc64)
    ss, lattice["NbMoTaW"] = relax_cubic(solid_solution(dft["NbMoTaW"], args.repeat), calc64, fmax=1e-3)
    relaxed["NbMoTaW"] = ss
    summary = {"model": args.model, "lattice_constant_a": {}, "md": {}}
    for name in [*ELEMENTS, "NbMoTaW"]:
        err = 100 * (lattice[name] - dft[name]) / dft[name]
        summary["lattice_constant_a"][name] = {"model": lattice[name], "dft": dft[name], "error_percent": err,
                                               "within_1_percent": bool(abs(err) < 1.0)}
        print(f"{name:8s} a = {lattice[name]:.4f} A, DFT {dft[name]:.4f} A ({err:+.2f} %)"
              f"{'  (Vegard)' if name == 'NbMoTaW' else ''}", flush=True)
    for k, name in enumerate([*ELEMENTS, "NbMoTaW"]):
        cell = relaxed[name] if name == "NbMoTaW" else relaxed[name].repeat(args.repeat)
        res = nvt(cell, calc32, args.temperature, args.ps, args.timestep, seed=k, label=name)
        summary["md"][name] = res
        print(f"{name:8s} NVT {args.temperature:.0f} K, {args.ps} ps: <T> = {res['temperature_mean_k']:.0f} K, "
              f"RMSD max {res['rmsd_max_a']:.3f} A, closest pair {res['min_distance_min_a']:.2f} A: "
              f"{'stable' if res['stable'] else 'NOT STABLE'}", flush=True)
    summary["settings"] = {"ps": args.ps, "timestep_fs": args.timestep, "temperature_k": args.temperature,
                           "atoms_per_md_cell": 2 * args.repeat**3, "thermostat": "Langevin, friction 0.01/fs",
                           "md_dtype": "float32", "relax_dtype": "float64"}
    summary["pass"] = bool(all(v["within_1_percent"] for v in summary["lattice_constant_a"].values())
                           and all(v["stable"] for v in summary["md"].values()))
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=1)
    plot(out / "sanity.png", summary, args)
    print(f"wrote {out / 'summary.json'} and {out / 'sanity.png'}; pass: {summary['pass']}")
    return 0 if summary["pass"] else 1


def plot(path, summary, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 4))
    names = list(summary["lattice_constant_a"])
    errs = [summary["lattice_constant_a"][n]["error_percent"] for n in names]
    ax[0].bar(names, errs, color=["C0" if abs(e) < 1 else "C3" for e in errs])
    ax[0].axhspan(-1, 1, color="g", alpha=0.1)
    ax[0].set(ylabel="lattice constant error vs DFT (%)", title="bcc lattice constants")
    for name, res in summary["md"].items():
        ax[1].plot(res["time_ps"], res["temperature_k"], lw=0.7, label=name)
        ax[2].plot(res["time_ps"], res["rmsd_a"], lw=0.9, label=name)
    ax[1].axhline(args.temperature, color="k", ls="--", lw=0.8)
    ax[1].set(xlabel="time (ps)", ylabel="temperature (K)", title=f"NVT {args.temperature:.0f} K")
    ax[2].set(xlabel="time (ps)", ylabel="RMS displacement from start (A)", title="atoms stay on their sites")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
