"""Uncertainty from readout heads: the model's outputs, the ASE results, calibration."""

import numpy as np
import pytest
import torch
from conftest import make_model, periodic_cell, water_cluster

from cace_calc import CACECalculator
from cace_calc.graph import build_graph
from cace_calc.train.data import make_frames
from cace_calc.uncertainty import calibrate, calibration_report, gaussian_scale


@pytest.fixture(scope="module")
def heads_model():
    return make_model(("bchi",), n_heads=4, seed=3)


def test_heads_mean_is_the_prediction_and_members_agree(heads_model):
    atoms = periodic_cell()
    graph = build_graph([atoms], heads_model.config.elements, heads_model.cutoff)
    out = heads_model(graph, forces=True, stress=True, uncertainty=True, members=True)
    assert out["energy_members"].shape == (1, 4)
    assert torch.allclose(out["energy_members"].mean(dim=-1), out["energy"], atol=1e-10)
    assert torch.allclose(out["forces_members"].mean(dim=0), out["forces"], atol=1e-10)
    plain = heads_model(graph, forces=True, stress=True)
    assert torch.allclose(plain["forces"], out["forces"], atol=1e-10)
    assert torch.allclose(plain["stress"], out["stress"], atol=1e-12)
    # each member's forces are minus the gradient of that member's energy (finite difference)
    k, i, a, h = 2, 3, 1, 1e-5
    e = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[i, a] += sign * h
        g = build_graph([moved], heads_model.config.elements, heads_model.cutoff)
        e.append(float(heads_model(g, forces=False, uncertainty=True)["energy_members"][0, k]))
    assert float(out["forces_members"][k, i, a]) == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-5, abs=1e-7)
    spread = out["forces_members"].var(dim=0, correction=0).mean(dim=-1).sqrt()
    assert torch.allclose(out["forces_uncertainty"], heads_model.uncertainty_scale[2] * spread)
    assert (out["energy_uncertainty"] > 0).all() and (out["forces_uncertainty"] > 0).all()


def test_ase_results_single_and_batch(heads_model):
    calc = CACECalculator(heads_model, uncertainty=True)
    images = [water_cluster(), periodic_cell()]
    single = []
    for atoms in images:
        atoms.calc = calc
        atoms.get_potential_energy()
        single.append(dict(calc.results))
    batch = calc.calculate_batch(images)
    for s, b, atoms in zip(single, batch, images):
        assert s["energy_uncertainty"] > 0 and np.isfinite(s["energy_uncertainty"])
        assert s["forces_uncertainty"].shape == (len(atoms),)
        assert s["energies_uncertainty"].shape == (len(atoms),)
        for key in ("energy_uncertainty", "forces_uncertainty", "energies_uncertainty", "energy", "forces"):
            np.testing.assert_allclose(s[key], b[key], rtol=1e-9, atol=1e-12)
    assert calc.get_property("energy_uncertainty", images[1]) == pytest.approx(single[1]["energy_uncertainty"])
    # energy, forces and stress stay the mean prediction
    plain = CACECalculator(heads_model)
    atoms = periodic_cell()
    atoms.calc = plain
    np.testing.assert_allclose(atoms.get_forces(), single[1]["forces"], atol=1e-10)
    assert "energy_uncertainty" not in plain.results


def test_ase_members_mode(heads_model):
    atoms = periodic_cell()
    atoms.calc = CACECalculator(heads_model, uncertainty="members")
    atoms.get_potential_energy()
    r = atoms.calc.results
    assert r["forces_members"].shape == (4, len(atoms), 3)
    assert r["stress_members"].shape == (4, 6) and r["stress_uncertainty"].shape == (6,)
    np.testing.assert_allclose(r["forces_members"].mean(axis=0), r["forces"], atol=1e-10)
    assert r["energy_members"].mean() == pytest.approx(r["energy"], abs=1e-9)
    assert (r["stress_uncertainty"] >= 0).all()


def test_uncertainty_refused_without_heads(model):
    with pytest.raises(ValueError, match="carries no uncertainty"):
        CACECalculator(model, uncertainty=True)
    with pytest.raises(ValueError, match="False, True or 'members'"):
        CACECalculator(model, uncertainty="yes")


def test_unknown_keyword_is_a_type_error(model):
    with pytest.raises(TypeError, match="'dtyp'"):
        CACECalculator(model, dtyp="float32")
    CACECalculator(model, label="x", directory=".")  # ASE's own arguments stay accepted


def test_nan_uncertainty_is_an_error(heads_model):
    import copy

    from cace_calc.errors import CalculationFailed

    broken = copy.deepcopy(heads_model)
    broken.uncertainty_scale[0] = float("nan")
    atoms = water_cluster()
    atoms.calc = CACECalculator(broken, uncertainty=True)
    with pytest.raises(CalculationFailed, match="non-finite energy_uncertainty"):
        atoms.get_potential_energy()


def test_calibration_gives_unit_variance_and_keeps_the_prediction(heads_model):
    from ase.calculators.emt import EMT
    from ase.build import bulk

    rng = np.random.default_rng(0)
    images = []
    for _ in range(6):  # labels of another potential: the errors are real, the test is the calibration
        a = bulk("Cu", cubic=True) * (2, 1, 1)
        a.positions += rng.normal(scale=0.1, size=a.positions.shape)
        a.calc = EMT()
        a.get_potential_energy()
        images.append(a)
    model = make_model(("bchi",), n_heads=3, elements=(29,), seed=5)
    frames = make_frames(images, [29], model.cutoff, stress=False)
    graph = build_graph(images[:2], [29], model.cutoff)
    before = model(graph, forces=True, uncertainty=True)
    scales = calibrate(model, frames)
    after = model(graph, forces=True, uncertainty=True)
    # the heads' constant offsets are gone, the prediction is unchanged
    assert model.head_offsets.abs().sum() > 0 and float(model.head_offsets.sum()) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(after["energy"], before["energy"], atol=1e-9, rtol=0)
    torch.testing.assert_close(after["forces"], before["forces"], atol=1e-12, rtol=0)
    deviations = (after["energy_members"] - after["energy"][:, None]) - (before["energy_members"] - before["energy"][:, None])
    torch.testing.assert_close(deviations, -8 * model.head_offsets[0].expand(2, -1), atol=1e-9, rtol=0)
    assert set(scales) == {"energy", "forces", "forces_members", "forces_per_element", "forces_fraction_per_element",
                           "forces_threshold_ev_per_a"}
    from cace_calc.uncertainty import residuals

    raw = residuals(model, frames)
    z_members = raw.forces_error / (model.uncertainty_scale[2].item() * raw.forces_sigma_members)
    z_estimate = raw.forces_error / np.hypot(model.estimate_element_scale[0].item() * raw.forces_sigma,
                                             model.estimate_force_fraction[0].item() * raw.forces_norm)
    z_energy = raw.energy_error / (model.uncertainty_scale[0].item() * raw.energy_sigma)
    for z in (z_members, z_energy):  # unit variance on the frames it was calibrated on
        assert np.mean(z**2) == pytest.approx(1.0, rel=1e-9)
    assert np.mean(z_estimate**2) == pytest.approx(1.0, rel=1e-4)  # the likelihood's optimum (numerical)
    # the model's estimate is that formula
    out = model(build_graph(images[:1], [29], model.cutoff), forces=True, uncertainty=True)
    n = len(images[0])
    expected = np.hypot(model.estimate_element_scale[0].item() * raw.forces_sigma[: 3 * n: 3],
                        model.estimate_force_fraction[0].item() * raw.forces_norm[: 3 * n: 3])
    np.testing.assert_allclose(out["forces_uncertainty"].numpy(), expected, rtol=1e-9)
    report = calibration_report(model, frames)
    assert report["forces_members"]["coverage_2sigma"] == pytest.approx(np.mean(np.abs(z_members) <= 2))
    assert model.uncertainty_scale.tolist() == pytest.approx([scales["energy"], 1.0, scales["forces_members"]])
    assert model.estimate_element_scale.tolist() == pytest.approx([scales["forces_per_element"]["Cu"]])
    assert gaussian_scale(np.array([1.0, -2.0, 4.0]), np.ones(3)) == pytest.approx(np.sqrt(7.0))


def test_force_term_found_where_errors_grow_with_the_force():
    """Errors drawn with sigma = 0.1 |F| and a spread that says nothing: the fit puts the
    uncertainty on the force term; errors drawn with sigma = 2 spread: on the spread."""
    from cace_calc.uncertainty import spread_and_force_scales

    rng = np.random.default_rng(1)
    force = rng.uniform(0.05, 5.0, 20000)
    spread = rng.uniform(0.01, 0.1, 20000)
    a, b = spread_and_force_scales(rng.normal(size=20000) * 0.1 * force, spread, force)
    assert b == pytest.approx(0.1, rel=0.03) and a < 0.1
    a, b = spread_and_force_scales(rng.normal(size=20000) * 2.0 * spread, spread, force)
    assert a == pytest.approx(2.0, rel=0.03) and b < 0.002


def _emt_copper(n, rattle, seed, scale=1.0):
    """Rattled copper cells labelled by EMT (another potential: real errors for the model)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        a = bulk("Cu", cubic=True, a=3.61 * scale) * (2, 1, 1)
        a.positions += rng.normal(scale=rattle, size=a.positions.shape)
        a.calc = EMT()
        a.get_potential_energy()
        images.append(a)
    return images


def test_energy_sigma_is_the_prediction_rigidity_and_grows_off_the_data(tmp_path):
    """After fit_rigidity the energy sigma is s0 |(sum_i r_i) B| with B B^T = (F^T F + lambda)^-1
    (F the frames' mean last-layer rows), per atom s0 |r_i B|; it is larger on compressed cells
    than on cells like the fitted ones, and the model file keeps it."""
    from cace_calc import load_model, save_model
    from cace_calc.uncertainty import RIGIDITY_RIDGE, fit_rigidity

    model = make_model(("bchi",), n_heads=3, elements=(29,), seed=5)
    fitted = _emt_copper(12, 0.05, seed=1)
    frames = make_frames(fitted, [29], model.cutoff, stress=False)
    assert not model.has_rigidity
    info = fit_rigidity(model, frames)
    assert model.has_rigidity and info["structures"] == 12
    calibrate(model, frames)
    graph = build_graph(fitted[:2], [29], model.cutoff)
    out = model(graph, forces=True, uncertainty=True)
    # the formula, from the rows computed independently
    vectors = graph.positions[graph.receivers] - graph.positions[graph.senders] + graph.shifts
    _, rows = model.atomic_energies(graph.species, vectors, graph.receivers, graph.senders, rows=True)
    rows = rows.detach()
    all_graph = build_graph(fitted, [29], model.cutoff)
    v_all = all_graph.positions[all_graph.receivers] - all_graph.positions[all_graph.senders] + all_graph.shifts
    _, r_all = model.atomic_energies(all_graph.species, v_all, all_graph.receivers, all_graph.senders, rows=True)
    means = torch.stack([r_all.detach()[all_graph.batch == k].mean(dim=0) for k in range(len(fitted))])
    gram = means.T @ means
    gram += RIGIDITY_RIDGE * torch.trace(gram) / len(gram) * torch.eye(len(gram), dtype=torch.float64)
    inverse = torch.linalg.inv(gram)
    s0 = model.uncertainty_scale[0]
    for k in range(2):
        total = rows[graph.batch == k].sum(dim=0)
        assert float(out["energy_uncertainty"][k]) == pytest.approx(float(s0 * (total @ inverse @ total).sqrt()), rel=1e-6)
    expected_atoms = s0 * torch.einsum("ni,ij,nj->n", rows, inverse, rows).sqrt()
    torch.testing.assert_close(out["energies_uncertainty"], expected_atoms, rtol=1e-6, atol=0)
    # the energy errors over the calibrated sigma have unit variance on the calibration frames
    from cace_calc.uncertainty import residuals

    raw = residuals(model, frames)
    assert np.mean((raw.energy_error / (float(s0) * raw.energy_sigma)) ** 2) == pytest.approx(1.0, rel=1e-9)
    # off the data: compressed by 12 % in length, a larger sigma per atom than any fitted cell's
    squeezed = _emt_copper(4, 0.05, seed=2, scale=0.88)
    far = model(build_graph(squeezed, [29], model.cutoff), forces=True, uncertainty=True)
    near = model(build_graph(fitted, [29], model.cutoff), forces=True, uncertainty=True)
    assert float(far["energy_uncertainty"].min()) > 3 * float(near["energy_uncertainty"].max())
    # kept by the model file (its shape too); a float32 model keeps it in float64
    path = save_model(model, tmp_path / "m.pt")
    loaded = load_model(path, dtype=torch.float32)
    assert loaded.energy_rigidity.dtype == torch.float64
    torch.testing.assert_close(loaded.energy_rigidity, model.energy_rigidity)
    again = load_model(path, dtype=torch.float64)(graph, forces=True, uncertainty=True)
    torch.testing.assert_close(again["energy_uncertainty"], out["energy_uncertainty"])


def test_energy_sigma_of_a_file_without_rigidity_is_the_heads_spread(heads_model):
    """Files calibrated before the rigidity have none fitted: their energy sigma stays the
    calibrated spread of the heads' energies."""
    assert not heads_model.has_rigidity
    graph = build_graph([periodic_cell()], heads_model.config.elements, heads_model.cutoff)
    out = heads_model(graph, forces=False, uncertainty=True)
    spread = out["energy_members"].std(dim=-1, correction=0)
    torch.testing.assert_close(out["energy_uncertainty"], heads_model.uncertainty_scale[0] * spread)
