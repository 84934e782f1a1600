"""i-PI's <ffcommittee> served by one CACE driver: every readout head is a member, sent as
JSON extras (parse_json), against i-PI itself."""

import functools
import socket

import numpy as np
import pytest
import torch
from ase import units
from ase.stress import voigt_6_to_full_3x3_stress
from conftest import make_model
from ipi_helpers import model_file, serve_run, socket_name, water_box, water_model

from cace_calc import CACECalculator, save_model
from cace_calc.cli import main
from cace_calc.ipi import CACEDriver
from cace_calc.ipi.inputs import (
    MEMBERS_NAME,
    PIMDSettings,
    committee_forcefield_xml,
    socket_forcefield_xml,
    write_pimd_input,
)
from cace_calc.ipi.protocol import IPIConnection, header
from cace_calc.pimd import read_pimd_results, run_pimd

SCALE = (1.3, 1.1, 2.5)  # energy, forces estimate, forces of members: alpha is the last
ALPHA = SCALE[2]
HEADS = 4


@functools.cache
def heads_model():
    """A tiny random float64 model for H and O with four readout heads and a calibration."""
    model = make_model(elements=(1, 8), cutoff=3.0, seed=3, n_heads=HEADS)
    with torch.no_grad():
        model.uncertainty_scale.copy_(torch.tensor(SCALE, dtype=torch.float64))
    return model


def _rescaled(x: np.ndarray) -> np.ndarray:
    """i-PI's rescaling of the members (first axis) around their mean by alpha."""
    mean = x.mean(axis=0)
    return mean + ALPHA * (x - mean)


def _members(atoms):
    """The calculator's members in i-PI's units: energies (K,) Hartree, forces (K, 3N)
    Hartree/Bohr, virials (K, 3, 3) Hartree."""
    atoms = atoms.copy()
    atoms.calc = CACECalculator(heads_model(), uncertainty="members")
    atoms.get_potential_energy()
    res = atoms.calc.results
    energies = res["energy_members"] / units.Hartree
    forces = res["forces_members"].reshape(HEADS, -1) * units.Bohr / units.Hartree
    virials = -atoms.get_volume() * voigt_6_to_full_3x3_stress(res["stress_members"]) / units.Hartree
    return energies, forces, virials


def _read_extras(path) -> list[np.ndarray]:
    """An i-PI extras trajectory: one 2-D array (rows as printed) per written step."""
    steps = []
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#EXTRAS"):
            steps.append([])
        elif line.strip():
            steps[-1].append([float(x) for x in line.split()])
    return [np.array(rows) for rows in steps]


def test_committee_run_gives_the_members(tmp_path):
    """2 beads, 2 steps: i-PI's committee energies, forces, virials and uncertainty are the
    calculator's members (rescaled by alpha), the dynamics runs on their mean, and the driver
    switches to the committee from the <ffsocket>'s parameters."""
    atoms, name = water_box(), socket_name()
    ff = socket_forcefield_xml(unix=name, symbols="".join(atoms.get_chemical_symbols()), pbc=atoms.pbc,
                               committee=True, name=MEMBERS_NAME)
    cfg = PIMDSettings(beads=2, steps=2, trajectory_stride=1)
    xml = write_pimd_input(atoms, tmp_path, cfg, forcefield_xml=committee_forcefield_xml(ff, alpha=ALPHA),
                           committee=True)
    more = ("<trajectory filename='cforce' stride='1' extra_type='committee_force'> extras </trajectory>\n"
            "<trajectory filename='cvir' stride='1' extra_type='committee_virial'> extras </trajectory>\n")
    xml.write_text(xml.read_text().replace("<checkpoint", more + "<checkpoint"))
    driver = CACEDriver(heads_model(), template=atoms)  # no committee=True: INIT turns it on
    assert serve_run(tmp_path, name, driver) == 2 * 3 and driver.committee

    res = read_pimd_results(tmp_path)
    assert res.committee_energies.shape == (3, 2, HEADS) and res.committee_uncertainty.shape == (3, 2)
    energies, forces, virials = _members(atoms)
    for bead in range(2):  # step 0: both beads sit on the start structure
        assert res.committee_uncertainty[0, bead] / units.Hartree == pytest.approx(
            ALPHA * energies.std(ddof=1), rel=1e-7)
        np.testing.assert_allclose(res.committee_energies[0, bead] / units.Hartree, _rescaled(energies),
                                   rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(_read_extras(tmp_path / f"simulation.cforce_{bead}")[0], _rescaled(forces),
                                   rtol=1e-7, atol=1e-10)
        ipi_virials = _read_extras(tmp_path / f"simulation.cvir_{bead}")[0].reshape(HEADS, 3, 3)
        np.testing.assert_allclose(ipi_virials, _rescaled(virials), rtol=1e-7, atol=1e-10)
    assert np.abs(forces - forces.mean(axis=0)).max() > 1e-4  # the members differ
    assert res.potential_energy[0] == pytest.approx(energies.mean() * units.Hartree, abs=1e-6)
    # a later step: members at the positions i-PI wrote, and the dynamics on their mean
    for bead in range(2):
        frame = res.read_trajectory(bead)[2]
        energies, _, _ = _members(frame)
        np.testing.assert_allclose(res.committee_energies[2, bead], _rescaled(energies) * units.Hartree, atol=2e-5)
        assert res.bead_potential_energies[2, bead] == pytest.approx(energies.mean() * units.Hartree, abs=2e-6)
    avg = res.averages()
    per_atom = res.committee_uncertainty / len(atoms)
    assert avg["committee_uncertainty_per_atom"] == pytest.approx(per_atom.mean())
    assert avg["committee_uncertainty_per_atom_max"] == pytest.approx(per_atom.max())
    assert avg["potential_energy_uncertainty"] == pytest.approx(
        res.committee_energies.mean(axis=(0, 1)).std(ddof=1))


def _parse_committee_input(path):
    """i-PI's own reading of the <ffcommittee> in an input file (nothing is started)."""
    from ipi.inputs.simulation import InputSimulation
    from ipi.utils.io.inputs.io_xml import xml_parse_file

    with open(path) as f:
        xml = xml_parse_file(f)
    sim = InputSimulation()
    sim.parse(xml.fields[0][1])
    return next(v for k, v in sim.extra if k == "ffcommittee")


def test_cli_pimd_uncertainty_reports_the_committee(tmp_path, capsys):
    """`cace-calc pimd --uncertainty`: an <ffcommittee> input with alpha, one driver process
    handed both beads per exchange, the committee uncertainty printed with the averages."""
    water_box().write(tmp_path / "water.extxyz")
    path = save_model(heads_model(), tmp_path / "heads.pt")
    out = tmp_path / "out"
    rc = main(["pimd", str(tmp_path / "water.extxyz"), "--model", str(path), "--beads", "2", "--steps", "3",
               "--device", "cpu", "--threads", "1", "--out", str(out), "--quiet", "--uncertainty"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    committee = _parse_committee_input(out / "input.xml")
    assert committee.alpha.fetch() == ALPHA and committee.parse_json.fetch() is True
    assert [k for k, _ in committee.extra] == ["ffsocket"]
    res = read_pimd_results(out)
    assert res.committee_energies.shape == (4, 2, HEADS)
    avg = res.averages(skip=len(res.step) // 5)
    for key in ("committee_uncertainty_per_atom", "committee_uncertainty_per_atom_max",
                "potential_energy_uncertainty"):
        line = next(s for s in captured.out.splitlines() if s.split()[:1] == [key])
        assert float(line.split()[1]) == pytest.approx(avg[key], abs=1e-6)
    assert f"committee of {HEADS} members" in captured.out
    pots = np.loadtxt(out / "committee_pot.dat")  # what i-pi-committee-reweight reads, Hartree
    np.testing.assert_allclose(pots, res.committee_potential_energy / units.Hartree, rtol=1e-9)
    # the dynamics ran on the members' mean
    np.testing.assert_allclose(res.potential_energy, res.committee_potential_energy.mean(axis=1), atol=1e-6)


def test_committee_needs_a_model_with_heads(tmp_path, capsys):
    path = model_file(tmp_path)  # one readout head
    with pytest.raises(ValueError, match="^model 'given' has a single readout head"):
        CACEDriver(water_model(), template=water_box(), committee=True)
    with pytest.raises(ValueError, match=f"^model '{path}' has a single readout head"):
        run_pimd(water_box(), str(path), tmp_path / "run", beads=2, steps=1, progress=False, uncertainty=True)
    assert not (tmp_path / "run" / "input.xml").exists()
    with pytest.raises(ValueError, match="uncertainty=True needs mode='socket'"):
        run_pimd(water_box(), heads_model(), tmp_path / "run", mode="inprocess", progress=False, uncertainty=True)
    water_box().write(tmp_path / "water.extxyz")
    rc = main(["pimd", str(tmp_path / "water.extxyz"), "--model", str(path), "--out", str(tmp_path / "cli"),
               "--uncertainty"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"cace-calc pimd: error: model '{path}' has a single readout head")
    # a hand-written committee input reaching a driver of a one-head model: a one-line error at INIT
    ours, theirs = socket.socketpair()
    text = b"symbols: OHHOHHOHH, pbc: TTT, committee: true"
    with theirs:
        theirs.sendall(header("INIT") + np.int32(0).tobytes() + np.int32(len(text)).tobytes() + text)
        driver = CACEDriver(water_model(), template=water_box())
        with IPIConnection(ours, "test server", timeout=10) as conn:
            with pytest.raises(ValueError, match="^model 'given' has a single readout head"):
                driver._serve(conn)


@pytest.mark.parametrize("periodic", [True, False])
def test_committee_json_means_are_the_reply(periodic):
    """The members in the JSON average to the energy, forces and virial of the binary reply,
    for a periodic box (virial from the stress) and a cluster (virial from r x F)."""
    import json

    from cace_calc.ipi.bridge import IPIEvaluator, committee_calculator

    atoms = water_box()
    atoms.pbc = periodic
    ev = IPIEvaluator.from_atoms(committee_calculator(heads_model()), atoms)
    (energy, forces, virial, extra), = ev.compute_committee([atoms.cell.array.T / units.Bohr],
                                                             [atoms.positions / units.Bohr])
    members = json.loads(extra)
    assert np.mean(members["committee_pot"]) == pytest.approx(energy, abs=1e-12)
    np.testing.assert_allclose(np.mean(members["committee_force"], axis=0), forces.reshape(-1), atol=1e-12)
    np.testing.assert_allclose(np.mean(members["committee_virial"], axis=0), virial.T.reshape(-1), atol=1e-12)
    assert np.ptp(np.array(members["committee_virial"]), axis=0).max() > 1e-6  # the members differ
