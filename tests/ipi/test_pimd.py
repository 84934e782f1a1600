"""cace_calc.pimd: i-PI inputs, the one-call runner and `cace-calc pimd`."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.io import read
from ipi_helpers import TIMEOUT, model_file, water_box, water_model

from cace_calc.cli import main
from cace_calc.errors import ModelFileError, UnsupportedElementError
from cace_calc.ipi.inputs import (
    PIMDSettings,
    socket_forcefield_xml,
    standardize,
    write_pimd_input,
)
from cace_calc.pimd import read_pimd_results, run_pimd


def _parse_in_ipi(path):
    """i-PI's own reading of an input file (nothing is started)."""
    from ipi.inputs.simulation import InputSimulation
    from ipi.utils.io.inputs.io_xml import xml_parse_file

    with open(path) as f:
        xml = xml_parse_file(f)
    sim = InputSimulation()
    sim.parse(xml.fields[0][1])
    system = next(v for k, v in sim.extra if k == "system")
    return sim, system


@pytest.mark.parametrize("case", ["nvt", "npt", "classical", "piglet"])
def test_input_is_what_ipi_reads(tmp_path, case):
    piglet = (np.tile(np.eye(3) * 1e-3, (2, 1, 1)), np.tile(np.eye(3) * 300.0, (2, 1, 1)))
    kw = {"nvt": {"beads": 8, "thermostat": "pile_g", "pile_lambda": 0.5},
          "npt": {"beads": 4, "pressure_gpa": 0.5, "barostat_tau_fs": 150.0},
          "classical": {"beads": 1, "thermostat": "svr"},
          "piglet": {"beads": 2, "thermostat": "piglet", "piglet": piglet}}[case]
    cfg = PIMDSettings(temperature=250.0, steps=7, timestep_fs=0.25, tau_fs=50.0, **kw)
    atoms = water_box()
    ff = socket_forcefield_xml(unix="x", symbols="OHH" * 3, pbc=atoms.pbc)
    sim, system = _parse_in_ipi(write_pimd_input(atoms, tmp_path, cfg, forcefield_xml=ff))
    dyn = system.motion.dynamics
    rel = 1e-5  # i-PI's unit constants differ from ASE's (CODATA editions) by ~1e-6
    assert sim.total_steps.fetch() == 7
    assert system.initialize.nbeads.fetch() == cfg.beads
    assert system.ensemble.temperature.fetch() * units.Hartree / units.kB == pytest.approx(250.0, rel=rel)
    assert dyn.timestep.fetch() * units._aut * 1e15 == pytest.approx(0.25, rel=rel)
    assert dyn.mode.fetch() == ("npt" if case == "npt" else "nvt")
    assert dyn.thermostat.mode.fetch() == {"piglet": "nm_gle"}.get(case, cfg.thermostat)
    if case == "npt":
        p_au = system.ensemble.pressure.fetch()
        assert p_au * units.Hartree / units.Bohr**3 / units.GPa == pytest.approx(0.5, rel=1e-12)
        assert dyn.barostat.mode.fetch() == "isotropic"
    if case == "nvt":
        assert dyn.thermostat.pile_lambda.fetch() == 0.5
    if case == "piglet":
        assert dyn.thermostat.A.fetch().shape == (2, 3, 3)
    # the start structure round-trips exactly through i-PI's reader (Bohr, full cell)
    from ipi.utils.io import read_file

    with open(tmp_path / "init.xyz") as f:
        frame = read_file("xyz", f)
    np.testing.assert_allclose(frame["atoms"].q.reshape(-1, 3) * units.Bohr, atoms.positions, atol=1e-12)
    np.testing.assert_allclose(frame["cell"].h.T * units.Bohr, atoms.cell.array, atol=1e-12)
    assert list(frame["atoms"].names) == atoms.get_chemical_symbols()


def test_settings_errors():
    with pytest.raises(ValueError, match="beads must be a positive integer"):
        PIMDSettings(beads=0).validate()
    with pytest.raises(ValueError, match="thermostat must be one of"):
        PIMDSettings(thermostat="nose").validate()
    with pytest.raises(ValueError, match="for classical MD"):
        PIMDSettings(beads=4, thermostat="svr").validate()
    with pytest.raises(ValueError, match="needs piglet=.A, C."):
        PIMDSettings(thermostat="piglet").validate()
    with pytest.raises(ValueError, match="shape"):
        PIMDSettings(beads=4, thermostat="piglet", piglet=(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)))).validate()
    with pytest.raises(ValueError, match="timestep_fs must be positive"):
        PIMDSettings(timestep_fs=-1.0).validate()


def test_standardize_rotates_into_ipi_orientation():
    rng = np.random.default_rng(5)
    atoms = water_box()
    atoms.set_cell([[5.9, 0.3, -0.2], [0.4, 6.1, 0.1], [0.2, -0.5, 6.3]], scale_atoms=True)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    atoms.set_cell(atoms.cell.array @ q.T, scale_atoms=True)
    std = standardize(atoms)
    h = std.cell.array
    assert abs(h[0, 1]) + abs(h[0, 2]) + abs(h[1, 2]) < 1e-12 and (np.diag(h) > 0).all()
    np.testing.assert_allclose(std.get_all_distances(mic=True), atoms.get_all_distances(mic=True), atol=1e-10)
    np.testing.assert_allclose(std.cell.cellpar(), atoms.cell.cellpar(), atol=1e-10)
    mol = Atoms("H2O", positions=[[0, 0, 0], [0.9, 0, 0], [0, 0.9, 0]])
    boxed = standardize(mol)
    assert boxed.cell.rank == 3 and not boxed.pbc.any()
    left = water_box()
    left.cell = -left.cell
    with pytest.raises(ValueError, match="left-handed"):
        standardize(left)


def test_run_pimd_errors_before_starting(tmp_path):
    atoms = water_box()
    atoms.numbers[1] = 6
    with pytest.raises(UnsupportedElementError, match="C not supported"):
        run_pimd(atoms, water_model(), tmp_path / "a", beads=2, steps=1, progress=False)
    assert not (tmp_path / "a" / "input.xml").exists()
    with pytest.raises(ModelFileError, match="no-such-model"):
        run_pimd(water_box(), "no-such-model", tmp_path / "b", beads=2, steps=1, progress=False)
    with pytest.raises(ValueError, match="NPT .pressure_gpa set. needs a cell periodic"):
        mol = water_box()
        mol.pbc = False
        run_pimd(mol, water_model(), tmp_path / "c", pressure_gpa=0.1, beads=2, steps=1, progress=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        run_pimd(water_box(), water_model(), tmp_path / "d", mode="mpi", progress=False)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "simulation.out").write_text("")
    with pytest.raises(FileExistsError, match="already holds an i-PI run"):
        run_pimd(water_box(), water_model(), tmp_path / "e", beads=2, steps=1, progress=False)


def test_cli_pimd_npt_with_two_driver_processes(tmp_path, capsys):
    """`cace-calc pimd` with --pressure: NPT, two `cace-calc ipi` processes on one socket."""
    water_box().write(tmp_path / "water.extxyz")
    out = tmp_path / "out"
    rc = main(["pimd", str(tmp_path / "water.extxyz"), "--model", str(model_file(tmp_path)), "--beads", "2",
               "--steps", "4", "--pressure", "0.1", "--temperature", "200", "--drivers", "2", "--device",
               "cpu", "--threads", "1", "--stride", "2", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "kinetic_energy_per_atom(H)" in captured.out and "pressure" in captured.out
    res = read_pimd_results(out)
    assert res.step.tolist() == [0, 1, 2, 3, 4] and res.n_beads == 2
    assert np.ptp(res.volume) > 0  # the barostat moved the cell
    assert res.volume[0] == pytest.approx(216.0, rel=1e-7)  # 8 digits in i-PI's output
    frames = read(out / "centroid.extxyz", ":")
    assert len(frames) == 3 and abs(frames[-1].get_volume() - 216.0) > 1e-6
    logs = [(out / f"driver-{k}.log").read_text() for k in range(2)]
    counts = [int(log.split(";")[1].split()[0]) for log in logs]  # "... ; N structures evaluated"
    assert sum(counts) == 2 * 5  # 5 force evaluations of 2 beads, shared by the two drivers
    # the same command on the same folder is refused instead of mixing two runs
    rc = main(["pimd", str(tmp_path / "water.extxyz"), "--model", str(model_file(tmp_path)), "--out", str(out)])
    assert rc == 1 and "already holds an i-PI run" in capsys.readouterr().err


def test_run_pimd_reports_a_failing_driver(tmp_path, monkeypatch):
    """A driver that fails (its template disagrees with i-PI's atoms) stops the whole run,
    and the error quotes the driver's log."""
    from cace_calc import pimd

    real = pimd.write_pimd_input

    def broken(std, directory, cfg, **kwargs):
        path = real(std, directory, cfg, **kwargs)
        water_box()[:3].write(directory / "structure.extxyz")  # 3 atoms instead of 9
        return path

    monkeypatch.setattr(pimd, "write_pimd_input", broken)
    with pytest.raises(RuntimeError, match="(?s)driver 0 failed.*differ from the template"):
        run_pimd(water_box(), water_model(), tmp_path / "run", beads=2, steps=2, progress=False,
                 timeout=TIMEOUT, device="cpu")
