"""The ZBL core: nuclear repulsion at short range, switched off below the trained distances."""

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import make_model

from cace_calc import CACECalculator
from cace_calc.nn.zbl import COULOMB, INNER_FRACTION, ZBLCore, zbl_pair_energy
from cace_calc.train.data import make_frames, shortest_distances, zbl_radii_from

RADII = [[0.7, 0.8, 0.9], [0.8, 1.0, 1.1], [0.9, 1.1, 1.2]]  # elements H C O


def dimer(z1, z2, r):
    return Atoms(numbers=[z1, z2], positions=[[0, 0, 0], [r, 0, 0]])


def test_pair_energy_is_coulomb_at_contact_and_falls_monotonically():
    z = torch.tensor([74.0]), torch.tensor([74.0])
    r = torch.tensor([1e-4])
    assert float(zbl_pair_energy(*z, r) * r / (COULOMB * 74 * 74)) == pytest.approx(1.0, rel=1e-2)
    rs = torch.linspace(0.05, 3.0, 300, dtype=torch.float64)
    e = zbl_pair_energy(torch.full_like(rs, 8.0), torch.full_like(rs, 1.0), rs)
    assert (e > 0).all() and (torch.diff(e) < 0).all()


def test_switch_is_exact_on_both_sides_and_smooth():
    core = ZBLCore([1, 8], [[0.8, 1.0], [1.0, 2.0]])
    sp = torch.tensor([1]), torch.tensor([1])
    for r, factor in ((0.3, 1.0), (INNER_FRACTION * 2.0 - 1e-6, 1.0), (2.0, 0.0), (2.5, 0.0)):
        d = torch.tensor([r], dtype=torch.float64)
        full = 0.5 * zbl_pair_energy(torch.tensor([8.0], dtype=torch.float64), torch.tensor([8.0], dtype=torch.float64), d)
        assert float(core(*sp, d)) == pytest.approx(factor * float(full), rel=1e-9, abs=0)
    d = torch.linspace(0.9, 2.1, 2001, dtype=torch.float64, requires_grad=True)
    e = core(torch.ones(2001, dtype=torch.long), torch.ones(2001, dtype=torch.long), d)
    (g,) = torch.autograd.grad(e.sum(), d)
    assert torch.diff(g).abs().max() < 0.05 * g.abs().max()  # no jump in the force


def test_model_core_adds_exactly_the_pair_term_with_consistent_forces():
    with_core = make_model(("bchi",), zbl_radii=RADII, seed=1)
    without = make_model(("bchi",), seed=1)
    for r in (0.3, 0.6, 1.5):
        atoms = dimer(8, 1, r)
        atoms.calc = CACECalculator(with_core)
        e = atoms.get_potential_energy()
        per_atom = atoms.get_potential_energies()
        f = atoms.get_forces()
        atoms.calc = CACECalculator(without)
        e_plain, per_atom_plain = atoms.get_potential_energy(), atoms.get_potential_energies()
        d = torch.tensor([r], dtype=torch.float64)
        s = ZBLCore([1, 6, 8], RADII)(torch.tensor([2]), torch.tensor([0]), d)
        assert e - e_plain == pytest.approx(2 * float(s), rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(per_atom - per_atom_plain, [float(s)] * 2, rtol=1e-9, atol=1e-12)
        # forces: finite difference of the energy along the bond
        h = 1e-5
        e_pm = []
        for sign in (1, -1):
            moved = dimer(8, 1, r + sign * h)
            moved.calc = CACECalculator(with_core)
            e_pm.append(moved.get_potential_energy())
        assert f[1, 0] == pytest.approx(-(e_pm[0] - e_pm[1]) / (2 * h), rel=1e-5)


def test_fused_atoms_cost_more_than_a_keV():
    model = make_model(("bchi",), zbl_radii=RADII)
    atoms = dimer(1, 1, 1e-6)
    atoms.calc = CACECalculator(model)
    far = dimer(1, 1, 3.0)
    far.calc = CACECalculator(model)
    assert atoms.get_potential_energy() - far.get_potential_energy() > 1e3


def test_bad_radii_are_refused():
    from cace_calc import CACE, CACEConfig

    with pytest.raises(ValueError, match="2 x 2 matrix"):
        CACE(CACEConfig(elements=[1, 8], zbl_radii=[[1.0]]))
    with pytest.raises(ValueError, match="symmetric"):
        CACE(CACEConfig(elements=[1, 8], zbl_radii=[[1.0, 0.5], [0.7, 1.0]]))
    with pytest.raises(ValueError, match="positive"):
        CACE(CACEConfig(elements=[1, 8], zbl_radii=[[1.0, -0.5], [-0.5, 1.0]]))


def test_radii_from_data_sit_below_the_shortest_pair_distances():
    from ase.build import molecule

    images = [molecule("H2O"), molecule("H2O")]
    for a in images:
        a.info["energy"] = -1.0
        a.arrays["forces"] = np.zeros((3, 3))
        a.center(vacuum=4.0)
    images[1].positions[1] = images[1].positions[0] + [0.9, 0.1, 0.0]  # a shorter O-H
    frames = make_frames(images, [1, 8], 3.0, stress=False)
    d = shortest_distances(frames, 2)
    oh = np.linalg.norm(images[1].positions[1] - images[1].positions[0])
    assert d[0, 1] == d[1, 0] == pytest.approx(oh)
    assert np.isinf(d[1, 1])  # one O per frame: O-O never meet
    radii = np.array(zbl_radii_from(frames, 2))
    assert radii[0, 1] == pytest.approx(0.95 * oh, abs=1e-4)
    assert radii[1, 1] == pytest.approx(radii[np.isfinite(d)].min())
