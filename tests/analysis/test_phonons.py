"""Phonons: EMT Cu against phonopy used directly, physics checks, warnings, errors and the
batched CACE path."""

import numpy as np
import phonopy
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from conftest import make_model
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from cace_calc import CACECalculator
from cace_calc.bulk import evaluate_many
from cace_calc.errors import InvalidAtomsError, StressNotAvailableError
from cace_calc.phonons import ImaginaryModeWarning, compute_phonons

R_GAS = 8.314462618  # J/K/mol


class NoStressEMT(EMT):
    """EMT that does not offer stress, like a calculator for molecules."""

    implemented_properties = ("energy", "free_energy", "energies", "forces")


@pytest.fixture(scope="module")
def cu(tmp_path_factory):
    out = tmp_path_factory.mktemp("phonons")
    result = compute_phonons(bulk("Cu", "fcc", a=3.6), EMT(), supercell=(3, 3, 3), mesh=(8, 8, 8),
                             band_npoints=11, temperatures=[0.0, 100.0, 300.0, 3000.0], out_dir=out,
                             progress=False)
    return result


def test_relaxed_lattice_constant(cu):
    # the primitive fcc cell has a = sqrt(2) * nearest-neighbour distance; EMT Cu a = 3.5897 A
    assert cu.atoms.cell.lengths() * np.sqrt(2) == pytest.approx([3.5897] * 3, abs=2e-3)
    assert cu.atoms.cell.angles() == pytest.approx([60.0] * 3, abs=1e-6)


def test_reproduces_phonopy_directly(cu):
    """Same unit cell, phonopy driven by hand with EMT forces: same force constants and frequencies."""
    unit = cu.atoms
    ph = Phonopy(PhonopyAtoms(symbols=unit.get_chemical_symbols(), cell=unit.cell[:],
                              scaled_positions=unit.get_scaled_positions()),
                 supercell_matrix=np.diag([3, 3, 3]), primitive_matrix="auto")
    ph.generate_displacements(distance=0.01)
    forces = []
    for sc in ph.supercells_with_displacements:
        at = Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
        at.calc = EMT()
        forces.append(at.get_forces())
    ph.forces = np.array(forces)
    ph.produce_force_constants(show_drift=False)
    assert cu.phonopy.force_constants.shape == ph.force_constants.shape
    np.testing.assert_allclose(cu.phonopy.force_constants, ph.force_constants, atol=1e-6)
    for q in ([0.5, 0.0, 0.5], [0.5, 0.5, 0.5], [0.1, 0.2, 0.3]):  # X, L and a general point
        ph.run_qpoints([q])
        np.testing.assert_allclose(cu.frequencies(q), ph.qpoints.frequencies[0], atol=1e-5)
    # the band path: frequencies at the X label are phonopy's at X
    ph.run_qpoints([[0.5, 0.0, 0.5]])
    x_freqs = ph.qpoints.frequencies[0]
    ix = np.flatnonzero(np.all(np.isclose(cu.band_qpoints, [0.5, 0.0, 0.5]), axis=1))
    assert len(ix) > 0
    np.testing.assert_allclose(cu.band_frequencies[ix[0]], x_freqs, atol=1e-5)
    assert x_freqs.max() == pytest.approx(8.16, abs=0.05)  # EMT Cu longitudinal mode at X


def test_band_path_and_arrays(cu):
    assert cu.band_path == "GXWKGLUWLK,UX"
    assert cu.band_labels == ["G", "X", "W", "K", "G", "L", "U", "W", "L", "K|U", "X"]
    assert len(cu.band_label_distances) == len(cu.band_labels)
    assert np.all(np.diff(cu.band_label_distances) > 0)
    assert np.all(np.diff(cu.band_distances) >= -1e-12)
    assert cu.band_frequencies.shape == (len(cu.band_distances), 3)
    assert cu.band_segments[0] == (0, 11) and cu.band_segments[-1][1] == len(cu.band_distances)
    assert cu.dos_frequencies.shape == cu.dos.shape and (cu.dos >= -1e-12).all()


def test_acoustic_modes_vanish_at_gamma(cu):
    assert np.abs(cu.frequencies([0.0, 0.0, 0.0])).max() < 1e-3
    gamma_rows = np.all(np.abs(cu.band_qpoints) < 1e-12, axis=1)
    assert gamma_rows.sum() >= 2
    assert np.abs(cu.band_frequencies[gamma_rows]).max() < 1e-3
    assert not cu.has_imaginary and cu.min_frequency > -1e-3
    # small q: linear acoustic branches (frequency doubles with q)
    f1, f2 = cu.frequencies([0.01, 0.0, 0.01]), cu.frequencies([0.02, 0.0, 0.02])
    np.testing.assert_allclose(f2 / f1, 2.0, rtol=1e-3)


def test_thermal_properties(cu):
    np.testing.assert_allclose(cu.temperatures, [0.0, 100.0, 300.0, 3000.0])
    assert cu.heat_capacity[0] == pytest.approx(0.0, abs=1e-9)
    assert cu.entropy[0] == pytest.approx(0.0, abs=1e-9)
    # Dulong-Petit per mole of atoms, less the 3 acoustic modes at Gamma phonopy leaves out (1/512)
    assert cu.heat_capacity[-1] == pytest.approx(3 * R_GAS * (1 - 1 / 8**3), rel=1e-3)
    assert cu.free_energy[0] > 0  # zero-point energy
    assert np.all(np.diff(cu.free_energy) < 0) and np.all(np.diff(cu.entropy) > 0)


def test_output_files(cu):
    names = {"phonopy_params", "band", "total_dos", "thermal_properties", "bands_dos_plot", "thermal_plot"}
    assert set(cu.files) == names
    for path in cu.files.values():
        with open(path, "rb") as f:
            head = f.read(8)
        assert len(head) == 8
    with open(cu.files["bands_dos_plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    loaded = phonopy.load(cu.files["phonopy_params"], produce_fc=False, is_compact_fc=False, log_level=0)
    np.testing.assert_allclose(loaded.force_constants, cu.phonopy.force_constants, atol=1e-9)
    text = cu.table()
    assert "GXWKGLUWLK,UX" in text and "imaginary" not in text
    assert cu.to_dict()["band_labels"][-2] == "K|U"


def test_imaginary_modes_warn():
    """Simple cubic Cu is dynamically unstable with EMT (also after relaxing the cell)."""
    with pytest.warns(ImaginaryModeWarning, match=r"lowest frequency -\d+\.\d+ THz at q = \("):
        result = compute_phonons(bulk("Cu", "sc", a=2.4), EMT(), supercell=(2, 2, 2), mesh=(4, 4, 4),
                                 band_npoints=5, progress=False)
    assert result.has_imaginary and result.min_frequency < -2.0


def test_errors():
    with pytest.raises(InvalidAtomsError, match="periodic"):
        compute_phonons(molecule("H2O"), EMT(), progress=False)
    with pytest.raises(StressNotAvailableError, match="relax=False"):
        compute_phonons(bulk("Cu", "fcc", a=3.6), NoStressEMT(), supercell=(2, 2, 2), progress=False)
    with pytest.raises(ValueError, match="supercell"):
        compute_phonons(bulk("Cu", "fcc", a=3.6), EMT(), supercell=(2, 2), progress=False)
    with pytest.raises(ValueError, match="displacement"):
        compute_phonons(bulk("Cu", "fcc", a=3.6), EMT(), displacement=-0.01, progress=False)
    with pytest.raises(TypeError, match="calculator"):
        compute_phonons(bulk("Cu", "fcc", a=3.6), 42, progress=False)


def test_no_stress_needed_without_relaxation():
    result = compute_phonons(bulk("Cu", "fcc", a=3.5897), NoStressEMT(), supercell=(2, 2, 2), relax=False,
                             mesh=(4, 4, 4), band_npoints=5, progress=False)
    assert np.abs(result.frequencies([0, 0, 0])).max() < 1e-3


@pytest.fixture(scope="module")
def w_calc():
    return CACECalculator(make_model(elements=(41, 42, 73, 74), cutoff=4.0), device="cpu")


def test_cace_batched_forces_equal_one_by_one(w_calc):
    """The CACE path: a bcc W-Mo supercell, forces batched in one call and one by one."""
    atoms = bulk("W", "bcc", a=3.17, cubic=True)
    atoms.numbers[1] = 42  # B2 W-Mo: two species, displacements of both
    kw = {"supercell": (2, 2, 2), "relax": False, "mesh": (2, 2, 2), "band_npoints": 3, "imaginary_tol": None,
          "progress": False}
    batched = compute_phonons(atoms, w_calc, **kw)
    single = compute_phonons(atoms, w_calc, batch=False, **kw)
    assert batched.n_displacements == 2 and batched.phonopy.forces.shape == (2, 16, 3)
    np.testing.assert_allclose(batched.phonopy.forces, single.phonopy.forces, atol=1e-10)
    assert np.abs(batched.phonopy.forces).max() > 1e-4  # the displaced atom feels a force
    np.testing.assert_allclose(batched.band_frequencies, single.band_frequencies, atol=1e-8)
    assert batched.band_frequencies.shape[1] == 6  # 2 atoms in the primitive (simple cubic) cell
    # the displaced supercells through evaluate_many against the calculator's own get_forces
    images = [bulk("W", "bcc", a=3.17).repeat(2), bulk("Mo", "bcc", a=3.16).repeat((2, 2, 1))]
    for im in images:
        im.rattle(0.05, seed=1)
    for res, im in zip(evaluate_many(images, w_calc, ("energy", "forces", "stress")), images):
        at = im.copy()
        at.calc = w_calc
        np.testing.assert_allclose(res["forces"], at.get_forces(), atol=1e-10)
        np.testing.assert_allclose(res["stress"], at.get_stress(), atol=1e-12)
        assert float(res["energy"]) == pytest.approx(at.get_potential_energy(), abs=1e-9)


def test_model_argument(tmp_path):
    """A model object or model file is turned into a CACECalculator."""
    from cace_calc import save_model

    path = save_model(make_model(elements=(74,), cutoff=4.0), tmp_path / "w.pt")
    result = compute_phonons(bulk("W", "bcc", a=3.17), str(path), supercell=(2, 2, 2), relax=False,
                             mesh=(2, 2, 2), band_npoints=3, imaginary_tol=None, device="cpu", progress=False)
    assert result.band_path == "GHNGPH,PN"
    assert result.band_frequencies.shape[1] == 3
