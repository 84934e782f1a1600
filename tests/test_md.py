"""cace_calc.md.run_md and cace-calc md: thermostat, barostat, log and trajectory files, errors."""

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from conftest import make_model, periodic_cell, water_cluster

from cace_calc import CACECalculator, save_model
from cace_calc.cli import main
from cace_calc.md import run_md


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_model(make_model(elements=(1, 6, 8), cutoff=4.0), tmp_path_factory.mktemp("model") / "m.pt")


def copper():
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)  # 32 atoms


def log_rows(path):
    with open(path) as fh:
        lines = fh.read().splitlines()
    return lines[0], np.array([[float(x) for x in line.split()] for line in lines[1:]])


def test_nvt_holds_the_temperature(tmp_path):
    res = run_md(copper(), EMT(), temperature=500.0, steps=200, timestep=2.0, friction=0.05,
                 out_dir=tmp_path, log_every=5, traj_every=50, seed=1, progress=False)
    header, rows = log_rows(res.log_file)
    assert "T[K]" in header and "stress" in header
    assert len(rows) == 200 // 5 + 1  # step 0 included
    np.testing.assert_allclose(rows[:, 0], np.arange(0, 200 + 1, 5) * 2.0 / 1000)  # time in ps
    assert rows[0, 4] == pytest.approx(500.0, rel=0.3)  # drawn at 500 K
    late = rows[len(rows) // 2:, 4].mean()
    assert 350.0 < late < 650.0, late  # Langevin at 500 K (32 atoms: fluctuations ~ 15 %)
    assert 350.0 < res.temperature_mean_k < 650.0
    assert np.abs(res.atoms.get_momenta().sum(axis=0)).max() < 1e-10  # centre of mass fixed
    traj = ase.io.read(res.trajectory_file, ":")
    assert len(traj) == 200 // 50 + 1
    assert not np.allclose(traj[0].positions, traj[-1].positions)
    assert res.steps == 200 and res.ms_per_step > 0


def test_same_seed_same_run():
    a = run_md(copper(), EMT(), steps=10, timestep=2.0, seed=3, progress=False)
    b = run_md(copper(), EMT(), steps=10, timestep=2.0, seed=3, progress=False)
    c = run_md(copper(), EMT(), steps=10, timestep=2.0, seed=4, progress=False)
    np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
    assert not np.allclose(a.atoms.positions, c.atoms.positions)
    assert a.log_file is None and a.trajectory_file is None


def test_npt_changes_the_volume(tmp_path):
    atoms = copper()
    res = run_md(atoms, EMT(), temperature=300.0, steps=30, timestep=2.0, ensemble="npt", pressure=5.0,
                 pdamp=100.0, out_dir=tmp_path, log_every=10, progress=False)
    assert res.atoms.get_volume() < atoms.get_volume()  # compressed by 5 GPa
    assert atoms.get_volume() == pytest.approx(32 * 3.61**3 / 4)  # the input is not modified
    _, rows = log_rows(res.log_file)
    assert rows.shape == (4, 11)  # time, 3 energies, T, 6 stress components


@pytest.mark.parametrize("kwargs, match", [
    ({"ensemble": "nve"}, "ensemble must be"),
    ({"log_every": 0}, "log_every and traj_every"),
    ({"timestep": 0.0}, "timestep > 0"),
    ({"ensemble": "npt"}, "NPT needs a cell periodic"),
])
def test_bad_settings(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        run_md(water_cluster(), EMT(), steps=1, out_dir=tmp_path, **kwargs)
    assert not (tmp_path / "md.log").exists()


def test_cli_md(model_file, tmp_path, capsys):
    src = tmp_path / "start.xyz"
    ase.io.write(src, periodic_cell())
    out = tmp_path / "run"
    assert main(["md", str(src), "--model", str(model_file), "--steps", "6", "--timestep", "0.2",
                 "--log-every", "2", "--traj-every", "3", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "NVT 300 K: 6 steps of 0.2 fs" in text and "mean temperature" in text and "ms per step" in text
    assert f"wrote {out / 'md.log'}" in text
    _, rows = log_rows(out / "md.log")
    assert len(rows) == 4
    assert len(ase.io.read(out / "md.traj", ":")) == 3
    # the same start with the model directly: same first potential energy
    atoms = periodic_cell()
    atoms.calc = CACECalculator(model_file, dtype="float32")
    assert rows[0, 2] == pytest.approx(atoms.get_potential_energy(), abs=2e-3)


def test_cli_md_npt(model_file, tmp_path, capsys):
    src = tmp_path / "start.xyz"
    ase.io.write(src, periodic_cell())
    assert main(["md", str(src), "--model", str(model_file), "--steps", "2", "--ensemble", "npt",
                 "--pressure", "0.1", "--out", str(tmp_path / "npt"), "--quiet"]) == 0
    assert "NPT 300 K, 0.1 GPa" in capsys.readouterr().out


@pytest.mark.parametrize("structure, args, match", [
    ("cluster", ["--ensemble", "npt"], "NPT needs a cell periodic in all three directions"),
    ("cluster", ["--pressure", "1"], "--pressure goes with --ensemble npt"),
    ("chlorine", [], "element(s) Cl not supported"),
    ("missing", [], "does not exist"),
    ("cluster", ["--index", ":"], "selects 2 frames"),
])
def test_cli_md_errors(structure, args, match, model_file, tmp_path, capsys):
    src = tmp_path / "start.xyz"
    if structure == "cluster":
        ase.io.write(src, [water_cluster(), water_cluster()])
    elif structure == "chlorine":
        atoms = water_cluster()
        atoms.numbers[0] = 17
        ase.io.write(src, atoms)
    out = tmp_path / "md"
    assert main(["md", str(src), "--model", str(model_file), "--steps", "2", "--out", str(out), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cace-calc md: error:") and match in err
    assert not out.exists()  # nothing written


def test_uncertainty_guard_warns_once_and_stops_the_run(tmp_path, capsys):
    model = make_model(("bchi",), n_heads=4, elements=(1, 6, 8), seed=2)
    calc = CACECalculator(model, uncertainty=True)
    start = periodic_cell()
    start.calc = calc
    sigma0 = float(calc.get_property("forces_uncertainty", start).max())
    model.metadata = {"uncertainty": {"forces_threshold_ev_per_a": 0.5 * sigma0}}
    messages = []
    res = run_md(periodic_cell(), calc, steps=8, timestep=0.5, temperature=3000, out_dir=tmp_path / "a",
                 traj_every=100, say=messages.append, seed=1)
    assert res.stopped_at_step is None and res.steps == 8
    assert res.max_force_uncertainty >= sigma0
    assert len(messages) == 1 and "step 0" in messages[0] and "passed the model's threshold" in messages[0]
    # a stop below what the run reaches: stopped at once, the frame written
    res = run_md(periodic_cell(), calc, steps=8, timestep=0.5, out_dir=tmp_path / "b", traj_every=100,
                 max_uncertainty=0.5 * sigma0, say=messages.append)
    assert res.stopped_at_step is not None and res.stopped_at_step < 8
    assert "stopped" in res.uncertainty_events[-1]
    frames = ase.io.read(tmp_path / "b" / "md.traj", ":")
    assert len(frames) == 2  # step 0 and the frame where it stopped
    with pytest.raises(ValueError, match="needs a calculator that reports forces_uncertainty"):
        run_md(periodic_cell(), CACECalculator(make_model()), steps=1, max_uncertainty=1.0)


def test_cli_md_max_uncertainty(tmp_path, capsys):
    heads = save_model(make_model(("bchi",), n_heads=3, elements=(1, 6, 8)), tmp_path / "heads.pt")
    src = tmp_path / "start.xyz"
    ase.io.write(src, periodic_cell())
    assert main(["md", str(src), "--model", str(heads), "--steps", "4", "--out", str(tmp_path / "run"),
                 "--quiet", "--max-uncertainty", "1e-9"]) == 0
    text = capsys.readouterr().out
    assert "passed --max-uncertainty 1e-09 eV/A: stopped" in text and "stopped at step 0" in text
    assert "largest force uncertainty" in text
