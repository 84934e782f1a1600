"""The shipped pretrained models: load by name (and alias), meet the issue's error targets on
their held-out test split, and reproduce the errors recorded at shipping time on a fixed subset
of that split."""

import json
from importlib import resources

import ase.io
import pytest
from conftest import SHARED

from cace_calc import available_models, load_model
from cace_calc.evaluate import evaluate_structures

DATA = {"water": SHARED / "data" / "water" / "water_pbe0_train.xyz",
        "nbmotaw": SHARED / "data" / "nbmotaw" / "nbmotaw_train.xyz"}
# the targets on frames the model never saw: energy meV/atom, forces meV/A, stress GPa
TARGETS = {"water": {"energy_rmse_mev_per_atom": 1.0, "forces_rmse_mev_per_a": 45.0},
           "nbmotaw": {"energy_rmse_mev_per_atom": 5.0, "forces_rmse_mev_per_a": 120.0, "stress_rmse_gpa": 0.5}}


SHIPPED = ["water", "nbmotaw"]


def test_shipped_models_are_installed():
    assert set(SHIPPED) <= set(available_models())
    assert load_model("water").config.elements == [1, 8]
    assert load_model("hea").config.elements == load_model("nbmotaw").config.elements == [41, 42, 73, 74]


@pytest.mark.parametrize("name", SHIPPED)
def test_card_errors_meet_the_targets(name):
    meta = load_model(name).metadata
    test = meta["metrics"]["test"]
    assert test["n_structures"] == len(meta["split"]["test"]) > 0
    assert not set(meta["split"]["test"]) & set(meta["split"]["train"])
    for key, limit in TARGETS[name].items():
        assert test[key] <= limit, (key, test[key])
    card = (resources.files("cace_calc.pretrained") / name / "README.md").read_text()
    assert f"{test['forces_rmse_mev_per_a']:.1f}" in card  # the card quotes the model's own numbers


@pytest.mark.requires_shared
@pytest.mark.parametrize("name", SHIPPED)
def test_fixed_test_subset_reproduces_recorded_errors(name):
    check = json.loads((resources.files("cace_calc.pretrained") / name / "check.json").read_text())
    assert set(check["indices"]) <= set(load_model(name).metadata["split"]["test"])
    images = [ase.io.read(DATA[name], index=i) for i in check["indices"]]
    metrics = evaluate_structures(images, name, device="cpu").metrics
    for key, value in check["metrics"].items():
        assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("name", SHIPPED)
def test_pretrained_models_carry_a_calibrated_uncertainty(name):
    """Heads, calibration factors from the validation split, an MD threshold, and the card's
    calibration section quoting the model's own coverage."""
    import numpy as np

    from cace_calc import CACECalculator
    from cace_calc.data import structure

    model = load_model(name)
    assert model.n_heads > 1
    assert (model.uncertainty_scale > 0).all() and not (model.uncertainty_scale == 1).all()
    assert model.metadata["uncertainty"]["forces_threshold_ev_per_a"] > 0
    atoms = structure({"water": "water-64", "nbmotaw": "nbmotaw-128"}[name])
    atoms.calc = CACECalculator(name, uncertainty=True)
    atoms.get_potential_energy()
    sigma = atoms.calc.results["forces_uncertainty"]
    assert sigma.shape == (len(atoms),) and np.isfinite(sigma).all() and (sigma > 0).all()
    card = (resources.files("cace_calc.pretrained") / name / "README.md").read_text()
    assert "## Uncertainty and its calibration" in card and "## Short range: the ZBL core" in card


@pytest.mark.parametrize("name", SHIPPED)
def test_pretrained_dimers_repel_like_nuclei(name):
    """Every element pair: the isolated dimer's energy rises monotonically as r falls from 1.2 A
    (H-H from 0.6 A, O-H from 0.8 A) to 0.1 A and is within a factor 2 of ZBL at 0.3 and 0.5 A."""
    import numpy as np
    import torch
    from ase import Atoms
    from ase.data import chemical_symbols

    from cace_calc import CACECalculator
    from cace_calc.nn.zbl import zbl_pair_energy

    model = load_model(name)
    calc = CACECalculator(model)
    symbols = [chemical_symbols[z] for z in model.config.elements]
    for i, a in enumerate(symbols):
        for b in symbols[i:]:
            start = {frozenset("H"): 0.6, frozenset("OH"): 0.8}.get(frozenset(a + b), 1.2)
            radii = np.linspace(0.1, start, 60)
            images = [Atoms(a + b, positions=[[0, 0, 0], [r, 0, 0]]) for r in radii]
            images.append(Atoms(a + b, positions=[[0, 0, 0], [40.0, 0, 0]]))
            e = np.array([res["energy"] for res in calc.calculate_batch(images)])
            e = e[:-1] - e[-1]
            assert (np.diff(e) < 0).all(), f"{a}-{b} not monotonic below {start} A"
            for r in (0.3, 0.5):
                zbl = float(zbl_pair_energy(*(torch.tensor([float(Atoms(x).numbers[0])], dtype=torch.float64)
                                              for x in (a, b)), torch.tensor([r], dtype=torch.float64)))
                ratio = np.interp(r, radii, e) / zbl
                assert 0.5 <= ratio <= 2.0, (a, b, r, ratio)
