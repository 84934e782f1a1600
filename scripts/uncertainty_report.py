"""How well a model's uncertainty is calibrated, and what it does far from its data: the numbers
and plots of the model card's calibration section.

1. Calibration on data never trained on nor used to calibrate (the model's own test split; for
   nbmotaw also per DFT group and on the SNAP-labelled ternary/quaternary test set): coverage of
   one and two sigma, Spearman rank correlation of sigma with |error| (energy per structure,
   forces per atom), for the cheap force estimate and for the members' forces.
2. Far from the data (no labels: sigma only, against sigma on the test split):
   water: the liquid compressed to 1.5x density (molecules kept whole), a water slab
   (vacuum), an H-H and an O-H pair pushed to 1 A; nbmotaw: molten Nb, Mo, Ta, W (SNAP MD at
   1.25x the melting point) against the crystals at 300 K, (110) surfaces, a W-W dimer at 1 A.
3. Plots: a reliability diagram (observed against Gaussian coverage, k sigma from 0 to 3) and
   sigma against |error| per atom (forces), for the test split.

    python scripts/uncertainty_report.py water --out runs/report/water
    python scripts/uncertainty_report.py nbmotaw --out runs/report/nbmotaw [--snap-test runs/snap/multinary_test.xyz]

Writes calibration.json and calibration.png to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = {"water": SHARED / "data" / "water" / "water_pbe0_train.xyz",
        "nbmotaw": SHARED / "data" / "nbmotaw" / "nbmotaw_train.xyz"}
MELTING_K = {"Nb": 2750.0, "Mo": 2896.0, "Ta": 3290.0, "W": 3695.0}
BCC_A = {"Nb": 3.31, "Mo": 3.16, "Ta": 3.32, "W": 3.18}


def test_frames(model, name):
    """The model's test split (indices in its metadata) as images."""
    import ase.io

    images = ase.io.read(DATA[name], ":")
    return [images[i] for i in model.metadata["split"]["test"]]


def report(model, images, with_residuals=False):
    from cace_calc.train.data import make_frames
    from cace_calc.uncertainty import calibration_report, residuals

    frames = make_frames(images, model.config.elements, model.cutoff, stress=False)
    rep = calibration_report(model, frames)
    return (rep, residuals(model, frames)) if with_residuals else rep


def sigmas(model, images):
    """Mean per-atom force sigma (eV/A, cheap estimate and members) and mean energy sigma per
    atom (meV/atom) over ``images``, calibrated."""
    from cace_calc.graph import build_graph

    f_est, f_mem, e = [], [], []
    for a in images:
        out = model(build_graph([a], model.config.elements, model.cutoff), forces=True, members=True)
        f_est.append(float(out["forces_uncertainty_estimate"].mean()))
        f_mem.append(float(out["forces_uncertainty"].mean()))
        e.append(1e3 * float(out["energy_uncertainty"][0]) / len(a))
    return {"forces_estimate_ev_per_a": float(np.mean(f_est)), "forces_members_ev_per_a": float(np.mean(f_mem)),
            "energy_mev_per_atom": float(np.mean(e)), "n_structures": len(images)}


def compressed_water(images, factor=1.5):
    """Each frame with its box shrunk so the density is ``factor`` times; molecules move with
    their oxygen (kept whole)."""
    out = []
    s = factor ** (-1.0 / 3.0)
    for a in images:
        b = a.copy()
        o = np.where(b.numbers == 8)[0]
        d = b.get_all_distances(mic=True)
        owner = [o[np.argmin(d[i, o])] if z == 1 else i for i, z in enumerate(b.numbers)]
        shift = np.array([b.positions[owner[i]] * (s - 1.0) for i in range(len(b))])
        b.positions += shift
        b.set_cell(b.cell.array * s, scale_atoms=False)
        b.wrap()
        out.append(b)
    return out


def water_slab(images):
    out = []
    for a in images:
        b = a.copy()
        b.cell[2] = b.cell[2] * 2.0  # vacuum as thick as the liquid, periodic in 3-d
        out.append(b)
    return out


def dimer(sym, r):
    from ase import Atoms

    return Atoms(sym, positions=[[0, 0, 0], [r, 0, 0]])


def molten_and_crystal(element, seed):
    """SNAP MD frames (54 atoms): the melt (2 ps at 2.5 Tm to melt it, then 2 ps at 1.25 Tm,
    volume +6 %), the crystal at 300 K; with the mean squared displacement over the last 1 ps
    (a liquid diffuses: several A^2)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from ase import units
    from ase.build import bulk
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from snap_peer import SNAPCalculator

    out = {}
    for phase, t_k, scale, steps in (("melt", 1.25 * MELTING_K[element], 1.02, 1000), ("crystal", 300.0, 1.0, 500)):
        atoms = bulk(element, "bcc", a=BCC_A[element] * scale, cubic=True) * (3, 3, 3)
        atoms.calc = SNAPCalculator()
        rng = np.random.default_rng(seed)
        MaxwellBoltzmannDistribution(atoms, temperature_K=t_k, rng=rng)
        if phase == "melt":  # superheat until it melts, then hold above the melting point
            Langevin(atoms, 2.0 * units.fs, temperature_K=2.5 * MELTING_K[element], friction=0.02 / units.fs,
                     fixcm=False, rng=rng).run(1000)
        dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=t_k, friction=0.02 / units.fs, fixcm=False, rng=rng)
        frames = []
        dyn.attach(lambda: frames.append(atoms.copy()), interval=100)
        dyn.run(steps)
        d = frames[-1].get_positions(wrap=False) - frames[-6].get_positions(wrap=False)
        msd = float(np.mean(np.sum(d**2, axis=1)))
        out[phase] = {"frames": frames[-5:], "temperature_k": t_k, "msd_a2": msd}
    return out


def plot(res_test, element_scale, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.special import erf

    k = np.linspace(0, 3, 61)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    rep, r = res_test
    gauss = erf(k / math.sqrt(2))
    ax1.plot(k, gauss, "k--", label="Gaussian")
    for label, err, sig in (("energy per structure", r.energy_error, rep["scale"][0] * r.energy_sigma),
                            ("forces (estimate)", r.forces_error,
                             rep["scale"][1] * element_scale[r.species] * r.forces_sigma),
                            ("forces (members)", r.forces_error, rep["scale"][2] * r.forces_sigma_members)):
        ax1.plot(k, [np.mean(np.abs(err) <= x * sig) for x in k], label=label)
    ax1.set_xlabel("k (error within k sigma)")
    ax1.set_ylabel("fraction of test errors")
    ax1.legend()
    ax1.set_title("reliability, test split")
    err_atom = np.sqrt((r.forces_error.reshape(-1, 3) ** 2).mean(axis=1))
    sig_atom = rep["scale"][2] * r.forces_sigma_members[::3]
    ax2.loglog(sig_atom, err_atom, ".", ms=2, alpha=0.4)
    lim = [min(sig_atom.min(), err_atom[err_atom > 0].min()), max(sig_atom.max(), err_atom.max())]
    ax2.plot(lim, lim, "k--", lw=1)
    ax2.set_xlabel("force sigma per atom, members (eV/A)")
    ax2.set_ylabel("force error per atom, RMS of components (eV/A)")
    ax2.set_title("sigma vs error, test split")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=["water", "nbmotaw"])
    p.add_argument("--model", help="model file (default: the pretrained one of that name)")
    p.add_argument("--out", required=True)
    p.add_argument("--snap-test", default=str(ROOT / "runs" / "snap" / "multinary_test.xyz"))
    p.add_argument("--no-melt", action="store_true", help="skip the SNAP melts (nbmotaw)")
    args = p.parse_args(argv)
    import torch

    from cace_calc import load_model

    torch.set_num_threads(2)
    model = load_model(args.model or args.name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = test_frames(model, args.name)
    rep, r = report(model, test, with_residuals=True)
    rep["scale"] = [float(x) for x in model.uncertainty_scale]
    result = {"model": args.model or args.name, "test": rep}
    base = sigmas(model, test[:8])
    far: dict = {"test split (reference)": base}
    if args.name == "water":
        far["liquid compressed to 1.5x density"] = sigmas(model, compressed_water(test[:8]))
        far["water slab (vacuum)"] = sigmas(model, water_slab(test[:4]))
        far["H-H pair at 1 A (isolated)"] = sigmas(model, [dimer("H2", 1.0)])
        far["O-H pair at 1 A (isolated)"] = sigmas(model, [dimer("OH", 1.0)])
    else:
        groups = sorted({a.info.get("config_type", "?") for a in test})
        result["test_groups"] = {g: report(model, [a for a in test if a.info.get("config_type") == g])
                                 for g in groups}
        snap = Path(args.snap_test)
        if snap.is_file():
            import ase.io

            result["snap_multinary_test"] = report(model, ase.io.read(snap, ":"))
        if not args.no_melt:
            for k, el in enumerate(MELTING_K):
                mc = molten_and_crystal(el, k)
                melt, cryst = sigmas(model, mc["melt"]["frames"]), sigmas(model, mc["crystal"]["frames"])
                melt.update(temperature_k=mc["melt"]["temperature_k"], msd_a2=mc["melt"]["msd_a2"])
                far[f"molten {el}"] = melt
                far[f"crystal {el} 300 K"] = cryst
                far[f"molten/crystal energy sigma {el}"] = melt["energy_mev_per_atom"] / cryst["energy_mev_per_atom"]
                print(f"{el}: melt {melt['energy_mev_per_atom']:.2f} meV/atom, crystal "
                      f"{cryst['energy_mev_per_atom']:.2f} (msd {mc['melt']['msd_a2']:.1f} A^2)", flush=True)
        from ase.build import bcc110

        far["W (110) surface slab"] = sigmas(model, [bcc110("W", size=(3, 3, 6), vacuum=8.0, a=3.18, periodic=True)])
        far["W-W pair at 1 A (isolated)"] = sigmas(model, [dimer("W2", 1.0)])
    result["far_from_data"] = far
    (out / "calibration.json").write_text(json.dumps(result, indent=1))
    plot((rep, r), model.estimate_element_scale.numpy(), out / "calibration.png",
         f"{args.name}: calibration on the test split")
    t = rep
    print(f"test split: energy 2-sigma coverage {t['energy']['coverage_2sigma']:.3f}, Spearman "
          f"{t['energy']['spearman']:.3f}; forces estimate {t['forces']['coverage_2sigma']:.3f} / "
          f"{t['forces']['spearman']:.3f}; members {t['forces_members']['coverage_2sigma']:.3f} / "
          f"{t['forces_members']['spearman']:.3f}")
    for k, v in far.items():
        print(f"  {k}: {v}")
    print(f"wrote {out / 'calibration.json'} and {out / 'calibration.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
