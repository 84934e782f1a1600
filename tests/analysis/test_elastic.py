"""Elastic constants: EMT Cu against matscipy's own fit, cubic symmetry, moduli formulas,
internal relaxation (hcp), Born stability, errors and the batched CACE path."""

import json

import numpy as np
import pytest
from ase import units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.optimize import BFGS
from conftest import make_model
from matscipy.elasticity import fit_elastic_constants

from cace_calc import CACECalculator
from cace_calc.elastic import elastic_constants, relax_cell, vrh_moduli
from cace_calc.errors import (
    InvalidAtomsError,
    PropertyNotImplementedError,
    StressNotAvailableError,
)
from cace_calc.relax import RelaxationWarning


class NoStressEMT(EMT):
    implemented_properties = ("energy", "free_energy", "energies", "forces")


@pytest.fixture(scope="module")
def cu():
    return elastic_constants(bulk("Cu", "fcc", a=3.6), EMT())


def test_matches_matscipy_fit(cu):
    atoms = cu.atoms.copy()
    atoms.calc = EMT()
    C, C_err = fit_elastic_constants(atoms, symmetry="triclinic", N_steps=5, delta=0.0025, verbose=False)
    np.testing.assert_allclose(cu.C, C / units.GPa, atol=1e-8)
    finite = np.isfinite(C_err)  # scipy gives NaN errors for exactly constant stresses
    np.testing.assert_allclose(cu.C_err[finite], C_err[finite] / units.GPa, atol=1e-8)
    assert np.isfinite(cu.C_err).all() and (cu.C_err >= 0).all()
    np.testing.assert_allclose(cu.strains, [-0.005, -0.0025, 0.0, 0.0025, 0.005])


def test_cubic_symmetry_and_values(cu):
    C = cu.C
    assert cu.atoms.cell.lengths()[0] * np.sqrt(2) == pytest.approx(3.5897, abs=2e-3)
    np.testing.assert_allclose(np.diag(C)[:3], C[0, 0], atol=0.05)
    np.testing.assert_allclose([C[0, 1], C[0, 2], C[1, 2]], C[0, 1], atol=0.05)
    np.testing.assert_allclose(np.diag(C)[3:], C[3, 3], atol=0.05)
    off_block = np.ones((6, 6), bool)
    off_block[:3, :3] = off_block[3:, 3:] = False
    off_block[3:, 3:] = ~np.eye(3, dtype=bool)
    assert np.abs(C[off_block]).max() < 0.05
    np.testing.assert_allclose(C, C.T, atol=1e-10)
    # EMT Cu at its own lattice constant (values measured with this code)
    assert C[0, 0] == pytest.approx(172.6, abs=0.5)
    assert C[0, 1] == pytest.approx(115.5, abs=0.5)
    assert C[3, 3] == pytest.approx(89.9, abs=0.5)
    assert np.abs(cu.residual_stress).max() < 0.05  # relaxed
    assert cu.stresses.shape == (6, 5, 6)
    # the unstrained cell of every pattern has the residual stress
    np.testing.assert_allclose(cu.stresses[:, 2, :], np.tile(cu.residual_stress, (6, 1)), atol=1e-12)


def test_moduli_and_stability(cu):
    c11, c12, c44 = cu.C[0, 0], cu.C[0, 1], cu.C[3, 3]
    assert cu.bulk_voigt == pytest.approx((c11 + 2 * c12) / 3, rel=1e-4)
    assert cu.bulk_reuss == pytest.approx((c11 + 2 * c12) / 3, rel=1e-4)
    assert cu.shear_voigt == pytest.approx((c11 - c12 + 3 * c44) / 5, rel=1e-4)
    assert cu.shear_reuss == pytest.approx(5 * (c11 - c12) * c44 / (4 * c44 + 3 * (c11 - c12)), rel=1e-4)
    assert cu.shear_hill == pytest.approx((cu.shear_voigt + cu.shear_reuss) / 2)
    k, g = cu.bulk_hill, cu.shear_hill
    assert cu.youngs_hill == pytest.approx(9 * k * g / (3 * k + g))
    assert cu.poisson_hill == pytest.approx((3 * k - 2 * g) / (2 * (3 * k + g)))
    # eigenvalues of a cubic tensor: C11 + 2 C12, C11 - C12 (twice), C44 (three times)
    np.testing.assert_allclose(cu.eigenvalues, sorted([c11 + 2 * c12, c11 - c12, c11 - c12, c44, c44, c44]),
                               rtol=1e-3)
    assert cu.stable


def test_vrh_of_an_isotropic_tensor():
    """An isotropic solid with E = 200 GPa, nu = 0.3: all averages agree and give back E and nu."""
    e, nu = 200.0, 0.3
    lam, mu = e * nu / ((1 + nu) * (1 - 2 * nu)), e / (2 * (1 + nu))
    C = np.zeros((6, 6))
    C[:3, :3] = lam
    C[np.arange(3), np.arange(3)] = lam + 2 * mu
    C[np.arange(3, 6), np.arange(3, 6)] = mu
    m = vrh_moduli(C)
    assert m["youngs_hill"] == pytest.approx(e) and m["poisson_hill"] == pytest.approx(nu)
    assert m["bulk_voigt"] == pytest.approx(m["bulk_reuss"]) == pytest.approx(lam + 2 * mu / 3)
    assert m["shear_voigt"] == pytest.approx(m["shear_reuss"]) == pytest.approx(mu)
    with pytest.raises(ValueError, match="6x6"):
        vrh_moduli(np.eye(3))


def test_bcc_copper_is_born_unstable():
    """bcc Cu with EMT has C11 < C12 (the Bain path): the Born check must say so."""
    result = elastic_constants(bulk("Cu", "bcc", a=2.87), EMT())
    assert result.C[0, 0] < result.C[0, 1]
    assert not result.stable and result.eigenvalues.min() < 0
    assert "UNSTABLE" in result.table()


def test_internal_relaxation_hcp():
    """hcp atoms are not inversion centres: strains move them. Matches matscipy with an optimizer."""
    hcp = bulk("Cu", "hcp", a=2.55)
    result = elastic_constants(hcp, EMT(), symmetry="hexagonal", fmax=1e-5)
    assert result.n_internal_relaxations > 0
    atoms = result.atoms.copy()
    atoms.calc = EMT()
    C, _ = fit_elastic_constants(atoms, symmetry="hexagonal", N_steps=5, delta=0.0025, verbose=False,
                                 optimizer=BFGS, fmax=1e-5)
    np.testing.assert_allclose(result.C, C / units.GPa, atol=1e-3)
    clamped = elastic_constants(result.atoms, EMT(), relax=False, relax_internal=False, symmetry="hexagonal")
    assert clamped.n_internal_relaxations == 0
    assert np.abs(clamped.C - result.C).max() > 5.0  # clamped-ion constants are stiffer
    assert result.C[5, 5] == pytest.approx((result.C[0, 0] - result.C[0, 1]) / 2, rel=1e-6)


def test_explicit_strains_and_json(cu):
    result = elastic_constants(cu.atoms, EMT(), relax=False, delta=[-0.004, -0.001, 0.002, 0.004])
    np.testing.assert_allclose(result.C, cu.C, atol=2.0)  # other strains, same constants up to anharmonicity
    d = json.loads(json.dumps(result.to_dict()))
    assert np.array(d["C_GPa"]).shape == (6, 6) and d["born_stable"] is True and d["formula"] == "Cu"
    assert d["bulk_hill_GPa"] == pytest.approx(result.bulk_hill)


def test_errors():
    with pytest.raises(InvalidAtomsError, match="periodic"):
        elastic_constants(molecule("H2O"), EMT())
    with pytest.raises(InvalidAtomsError, match="periodic"):
        relax_cell(molecule("CH4"), LennardJones())
    with pytest.raises(StressNotAvailableError, match="stress") as e:
        elastic_constants(bulk("Cu", "fcc", a=3.6), NoStressEMT())
    assert isinstance(e.value, PropertyNotImplementedError)  # ASE code catching that still works
    with pytest.raises(ValueError, match="delta"):
        elastic_constants(bulk("Cu", "fcc", a=3.6), EMT(), delta=0.2)
    with pytest.raises(ValueError, match="3 distinct"):
        elastic_constants(bulk("Cu", "fcc", a=3.6), EMT(), delta=[0.01, 0.01, -0.01])
    with pytest.raises(ValueError, match="symmetry"):
        elastic_constants(bulk("Cu", "fcc", a=3.6), EMT(), symmetry="icosahedral")


def test_relax_cell_warns_at_step_limit():
    with pytest.warns(RelaxationWarning, match="did not reach"):
        relax_cell(bulk("Cu", "fcc", a=3.8), EMT(), steps=1)


def test_cace_path_batched_equals_one_by_one():
    calc = CACECalculator(make_model(elements=(41, 42, 73, 74), cutoff=4.0), device="cpu")
    atoms = bulk("Nb", "bcc", a=3.31, cubic=True)
    atoms.numbers[1] = 73
    kw = {"relax": False, "delta": 0.01, "n_steps": 3, "relax_internal": False}
    batched = elastic_constants(atoms, calc, **kw)
    single = elastic_constants(atoms, calc, batch=False, **kw)
    assert batched.C.shape == (6, 6) and np.isfinite(batched.C).all()
    np.testing.assert_allclose(batched.C, single.C, atol=1e-8)
    np.testing.assert_allclose(batched.stresses, single.stresses, atol=1e-10)
