"""Physical sanity of a water model: NVT MD of 64 H2O at 300 K.

Checks that the liquid stays intact (every H bonded to one O, every O to two H: no O-H
bond longer than 1.3 A), that the temperature is stable, and that the O-O radial
distribution function has its first peak near 2.8 A. Starts from frame 0 of the PBE0 water
data (an equilibrated liquid at 0.993 g/cm3).

    python scripts/sanity_water.py --model water --ps 20 --out sanity/water
    python scripts/sanity_water.py --model runs/water/model.pt --ps 0.2      # quick look

Writes summary.json (the numbers the model card quotes), md.png (temperature, potential
energy, longest O-H bond against time; O-O and O-H g(r)) and a trajectory (traj.xyz).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "water" / "water_pbe0_train.xyz"


def oh_check(atoms) -> tuple[float, int]:
    """Longest bond of each H to its nearest O (A), and how many O do not have exactly two H
    as their nearest-O partners."""
    o = np.where(atoms.numbers == 8)[0]
    h = np.where(atoms.numbers == 1)[0]
    d = np.array([atoms.get_distances(i, o, mic=True) for i in h])  # [H, O]
    nearest = d.argmin(axis=1)
    counts = np.bincount(nearest, minlength=len(o))
    return float(d.min(axis=1).max()), int((counts != 2).sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="water", help="pretrained name or model file (default water)")
    p.add_argument("--ps", type=float, default=20.0, help="simulated time in ps (default 20)")
    p.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--equilibration", type=float, default=2.0, help="ps left out of averages and g(r) (default 2)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="sanity/water", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import ase.io
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from tqdm import tqdm

    from cace_calc import CACECalculator
    from cace_calc.rdf import radial_distribution

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atoms = ase.io.read(DATA, index=0)
    atoms.calc = CACECalculator(args.model, device=args.device, dtype=args.dtype)
    rng = np.random.default_rng(args.seed)
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep=args.timestep * units.fs, temperature_K=args.temperature,
                   friction=0.01 / units.fs, fixcm=False, rng=rng)
    n_steps = round(args.ps * 1000 / args.timestep)
    every = max(1, round(10 / args.timestep))  # every 10 fs
    n_equil = round(args.equilibration * 1000 / args.timestep)
    times, temps, epots, longest_oh, bad_o = [], [], [], [], []
    frames = []
    traj_path = out / "traj.xyz"
    traj_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with tqdm(total=n_steps, unit="step", desc="water NVT") as bar:
        for step in range(0, n_steps + 1, every):
            if step:
                dyn.run(every)
                bar.update(every)
            oh, bad = oh_check(atoms)
            times.append(step * args.timestep / 1000)
            temps.append(atoms.get_temperature())
            epots.append(atoms.get_potential_energy())
            longest_oh.append(oh)
            bad_o.append(bad)
            if step >= n_equil and step % (10 * every) == 0:
                frames.append(atoms.copy())
                ase.io.write(traj_path, atoms, append=True)
            bar.set_postfix(T=f"{temps[-1]:.0f} K", OH=f"{oh:.2f} A")
    wall = time.perf_counter() - t0
    temps, epots = np.array(temps), np.array(epots)
    sel = np.array(times) >= args.equilibration
    if not sel.any():
        sel[:] = True
        frames = frames or [atoms.copy()]
    r, g_oo = radial_distribution(frames, 8, 8, r_max=0.5 * min(atoms.cell.lengths()))
    _, g_oh = radial_distribution(frames, 8, 1, r_max=0.5 * min(atoms.cell.lengths()))
    first = (r > 2.0) & (r < 3.4)
    peak_oo = float(r[first][np.argmax(g_oo[first])])
    half = len(temps[sel]) // 2
    summary = {
        "model": args.model, "dtype": args.dtype, "ps": args.ps, "timestep_fs": args.timestep,
        "temperature_target_k": args.temperature, "thermostat": "Langevin, friction 0.01/fs",
        "temperature_mean_k": float(temps[sel].mean()), "temperature_std_k": float(temps[sel].std()),
        "temperature_first_half_k": float(temps[sel][:half].mean()) if half else float(temps[sel].mean()),
        "temperature_second_half_k": float(temps[sel][half:].mean()),
        "longest_oh_bond_a": float(max(longest_oh)), "max_oxygens_not_bonded_to_two_h": int(max(bad_o)),
        "intact": bool(max(longest_oh) < 1.3 and max(bad_o) == 0),
        "g_oo_first_peak_a": peak_oo, "g_oo_first_peak_height": float(g_oo[first].max()),
        "rdf_frames": len(frames), "ms_per_step": 1e3 * wall / max(1, n_steps),
    }
    summary["pass"] = bool(summary["intact"] and abs(summary["temperature_mean_k"] - args.temperature) < 15
                           and 2.7 <= peak_oo <= 2.9)
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=1)
    np.savetxt(out / "rdf.dat", np.column_stack([r, g_oo, g_oh]), header="r(A) g_OO g_OH")
    plot(out / "md.png", times, temps, epots, longest_oh, r, g_oo, g_oh, args)
    for k, v in summary.items():
        print(f"{k:34s} {v}")
    return 0 if summary["pass"] else 1


def plot(path, times, temps, epots, longest_oh, r, g_oo, g_oh, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(10, 6.5))
    ax[0, 0].plot(times, temps, lw=0.6)
    ax[0, 0].axhline(args.temperature, color="k", ls="--", lw=0.8)
    ax[0, 0].set(xlabel="time (ps)", ylabel="temperature (K)")
    ax[0, 1].plot(times, np.array(epots) - epots[0], lw=0.6)
    ax[0, 1].set(xlabel="time (ps)", ylabel="potential energy - E(0) (eV)")
    ax[1, 0].plot(times, longest_oh, lw=0.6)
    ax[1, 0].axhline(1.3, color="r", ls="--", lw=0.8, label="broken above")
    ax[1, 0].set(xlabel="time (ps)", ylabel="longest O-H bond (A)")
    ax[1, 0].legend()
    ax[1, 1].plot(r, g_oo, label="O-O")
    ax[1, 1].plot(r, g_oh, label="O-H")
    ax[1, 1].axvline(2.8, color="k", ls=":", lw=0.8)
    ax[1, 1].set(xlabel="r (A)", ylabel="g(r)", ylim=(0, 4))
    ax[1, 1].legend()
    fig.suptitle(f"64 H2O, NVT {args.temperature:.0f} K, {args.ps} ps, model {args.model}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
