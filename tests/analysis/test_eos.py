"""Birch-Murnaghan equation of state: the fit itself, EMT Cu against the elastic constants and
ASE's EOS fit, errors and the batched CACE path."""

import json

import numpy as np
import pytest
from ase import units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from conftest import make_model

from cace_calc import CACECalculator
from cace_calc.elastic import birch_murnaghan_eos, elastic_constants
from cace_calc.eos import EOSResult, fit_birch_murnaghan
from cace_calc.errors import InvalidAtomsError


def test_fit_recovers_known_parameters():
    truth = EOSResult(volumes=np.zeros(1), energies=np.zeros(1), v0=16.0, e0=-8.5, b0=310.0, b0_prime=4.3,
                      rms=0.0, natoms=1)
    v = np.linspace(14.5, 17.5, 9)
    fit = fit_birch_murnaghan(v, truth.energy(v))
    assert fit["v0"] == pytest.approx(16.0, rel=1e-10)
    assert fit["e0"] == pytest.approx(-8.5, abs=1e-10)
    assert fit["b0"] == pytest.approx(310.0, rel=1e-8)
    assert fit["b0_prime"] == pytest.approx(4.3, rel=1e-7)
    assert fit["rms"] < 1e-10


def test_fit_errors():
    v = np.linspace(10, 12, 7)
    with pytest.raises(ValueError, match="outside"):
        fit_birch_murnaghan(v, -v)  # energy keeps falling: no minimum in range
    with pytest.raises(ValueError, match="at least 5"):
        fit_birch_murnaghan(v[:4], v[:4] ** 2)
    with pytest.raises(ValueError, match="same length"):
        fit_birch_murnaghan(v, v[:3])


def test_emt_copper(tmp_path):
    """B0 agrees with (C11 + 2 C12) / 3 and with ASE's own Birch-Murnaghan fit of the same points."""
    plot = tmp_path / "eos.png"
    eos = birch_murnaghan_eos(bulk("Cu", "fcc", a=3.6), EMT(), plot=plot)
    cu = elastic_constants(bulk("Cu", "fcc", a=3.6), EMT())
    bulk_from_c = (cu.C[0, 0] + 2 * cu.C[0, 1]) / 3
    assert eos.b0 == pytest.approx(bulk_from_c, rel=0.01)
    assert eos.v0 == pytest.approx(3.5897**3 / 4, rel=1e-3)
    assert eos.v0 == pytest.approx(cu.atoms.get_volume(), rel=1e-4)
    assert 3.0 < eos.b0_prime < 7.0
    assert len(eos.volumes) == 11 and eos.volumes.max() / eos.volumes.min() == pytest.approx((1.03 / 0.97) ** 3)
    ref = EquationOfState(eos.volumes, eos.energies, eos="birchmurnaghan")
    v0, e0, b0 = ref.fit()
    assert eos.v0 == pytest.approx(v0, rel=1e-6)
    assert eos.e0 == pytest.approx(e0, abs=1e-6)
    assert eos.b0 == pytest.approx(b0 / units.GPa, rel=1e-5)
    assert eos.rms < 1e-4
    with open(plot, "rb") as f:
        assert f.read(4) == b"\x89PNG"
    assert eos.plot_file == str(plot)
    d = json.loads(json.dumps(eos.to_dict()))
    assert d["b0_GPa"] == pytest.approx(eos.b0) and len(d["energies_eV"]) == 11
    assert "B0  =" in eos.table()


def test_errors():
    with pytest.raises(InvalidAtomsError, match="periodic"):
        birch_murnaghan_eos(molecule("H2O"), EMT())
    with pytest.raises(ValueError, match="n_points"):
        birch_murnaghan_eos(bulk("Cu", "fcc", a=3.6), EMT(), n_points=3)
    with pytest.raises(ValueError, match="max_strain"):
        birch_murnaghan_eos(bulk("Cu", "fcc", a=3.6), EMT(), max_strain=0.5)


def test_cace_path_batched_equals_one_by_one():
    # this random model has an energy minimum near a = 2.5 A for bcc W
    calc = CACECalculator(make_model(elements=(41, 42, 73, 74), cutoff=4.0), device="cpu")
    atoms = bulk("W", "bcc", a=2.5)
    kw = {"relax": False, "n_points": 7, "max_strain": 0.06}
    batched = birch_murnaghan_eos(atoms, calc, **kw)
    single = birch_murnaghan_eos(atoms, calc, batch=False, **kw)
    np.testing.assert_allclose(batched.energies, single.energies, atol=1e-10)
    assert batched.b0 == pytest.approx(single.b0, rel=1e-8)
    assert batched.volumes.min() < batched.v0 < batched.volumes.max()
