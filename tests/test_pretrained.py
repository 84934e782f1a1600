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
