"""The in-process i-PI potential (<ffdirect> custom PES) and runs through it."""

import numpy as np
import pytest
from ase import units
from ase.stress import voigt_6_to_full_3x3_stress
from ipi_helpers import TIMEOUT, model_file, water_box, water_model

from cace_calc import CACECalculator
from cace_calc.pimd import run_pimd


def _ipi_structures(atoms, n, rng):
    """n rattled copies as i-PI hands them over: h (Bohr, vectors as columns), positions (Bohr)."""
    cells, pos, images = [], [], []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.set_cell(a.cell * (1 + 0.01 * rng.normal()), scale_atoms=True)
        images.append(a)
        cells.append(a.cell.array.T / units.Bohr)
        pos.append(a.positions / units.Bohr)
    return cells, pos, images


def test_pes_evaluates_all_beads_in_one_call(tmp_path, monkeypatch):
    from cace_calc.ipi.inprocess import CACEPES

    atoms = water_box()
    atoms.write(tmp_path / "t.extxyz")
    pes = CACEPES(model=str(model_file(tmp_path)), template=str(tmp_path / "t.extxyz"), device="cpu",
                  verbosity=1)
    calc = pes.evaluator.calculator
    calls = []
    real = calc.calculate_batch
    monkeypatch.setattr(calc, "calculate_batch", lambda images: calls.append(len(images)) or real(images))

    cells, pos, images = _ipi_structures(atoms, 4, np.random.default_rng(0))
    batched = pes(cells, pos)
    assert calls == [4]  # four beads, one model call
    single = [pes(c, q) for c, q in zip(cells, pos)]
    ref = CACECalculator(water_model())
    for (e, f, v, extra), (e1, f1, v1, _), a in zip(batched, single, images):
        a.calc = ref
        assert extra == ""
        assert e == pytest.approx(a.get_potential_energy() / units.Hartree, abs=1e-12)
        np.testing.assert_allclose(f, a.get_forces() * units.Bohr / units.Hartree, atol=1e-12)
        vir = -a.get_volume() * voigt_6_to_full_3x3_stress(a.get_stress()) / units.Hartree
        np.testing.assert_allclose(v, vir, atol=1e-12)
        assert e1 == pytest.approx(e, abs=1e-12)
        np.testing.assert_allclose(f1, f, atol=1e-12)
        np.testing.assert_allclose(v1, v, atol=1e-12)


def test_pes_parameter_errors(tmp_path):
    from cace_calc.ipi.inprocess import CACEPES

    water_box().write(tmp_path / "t.extxyz")
    with pytest.raises(ValueError, match="unknown <parameters> for the cace PES: .'devise'."):
        CACEPES(model=str(model_file(tmp_path)), template=str(tmp_path / "t.extxyz"), devise="cpu")
    with pytest.raises(ValueError, match="needs <parameters>"):
        CACEPES(model=str(model_file(tmp_path)))


def test_cluster_virial_is_sum_r_f():
    """A molecule in i-PI's box: the virial sent is sum_i r_i F_i, which equals the
    strain derivative -dE/d(eps) (checked by finite differences)."""
    from cace_calc.ipi.bridge import IPIEvaluator

    atoms = water_box()[:6]
    atoms.pbc = False
    calc = CACECalculator(water_model())
    ev = IPIEvaluator.from_atoms(calc, atoms)
    h = np.eye(3) * 30 / units.Bohr
    _, _, vir = ev.compute([h], [atoms.positions / units.Bohr])[0]
    eps, fd = 1e-5, np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            e = []
            for s in (1, -1):
                strain = np.eye(3)
                strain[i, j] += s * eps
                a = atoms.copy()
                a.positions = atoms.positions @ strain.T
                a.calc = calc
                e.append(a.get_potential_energy())
            fd[i, j] = -(e[0] - e[1]) / (2 * eps)
    np.testing.assert_allclose(vir * units.Hartree, 0.5 * (fd + fd.T), atol=1e-6)
    assert np.abs(fd).max() > 1e-2


def test_inprocess_pimd_matches_ase(tmp_path):
    """All beads per step in one call inside i-PI: bead energies equal the calculator's."""
    atoms = water_box()
    res = run_pimd(atoms, water_model(), tmp_path / "run", mode="inprocess", beads=4, steps=3,
                   thermostat="pile_g", trajectory_stride=3, progress=False, timeout=TIMEOUT)
    assert res.step.tolist() == [0, 1, 2, 3]
    calc = CACECalculator(water_model())
    for bead in range(4):
        last = res.read_trajectory(bead)[-1]
        last.calc = calc
        assert last.get_potential_energy() == pytest.approx(res.bead_potential_energies[-1, bead], abs=1e-5)
    assert np.ptp(res.bead_potential_energies[-1]) > 1e-4
    centroid = res.read_trajectory()
    assert len(centroid) == 2 and np.abs(centroid[-1].positions).max() > 1.0
    assert (tmp_path / "run" / "centroid.extxyz").exists()


def test_piglet_runs_in_ipi(tmp_path):
    """PIGLET through i-PI's nm_gle thermostat (here with trivial, valid GLE matrices)."""
    beads, n = 2, 2
    a_mat = np.tile(np.diag([1e-3, 2e-3]), (beads, 1, 1))  # atomic units of frequency
    c_mat = np.tile(np.eye(n) * 300.0, (beads, 1, 1))  # K
    res = run_pimd(water_box(), water_model(), tmp_path / "run", mode="inprocess", beads=beads, steps=2,
                   thermostat="piglet", piglet=(a_mat, c_mat), progress=False, timeout=TIMEOUT)
    assert res.step.tolist() == [0, 1, 2]
    assert "nm_gle" in (tmp_path / "run" / "input.xml").read_text()
    assert np.isfinite(res.kinetic_energy_cv).all()
