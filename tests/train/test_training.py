"""Training: end to end on a tiny EMT-labelled set, exact resume, E0 fit, data checks."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from cace_calc import load_model
from cace_calc.cli import main
from cace_calc.train import DataError, TrainConfig, train
from cace_calc.train.data import fit_e0, make_frames, read_structures


def emt_structures(n=24, seed=0):
    """Rattled, strained 4-atom Cu/Au cells labelled with EMT energies, forces and stress."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.05 * rng.normal(), cubic=True)
        atoms.numbers[rng.random(4) < 0.4] = 79
        atoms.positions += rng.normal(scale=0.08, size=(4, 3))
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "emt.xyz"
    write(path, emt_structures())
    return path


def recipe(data_file, out, epochs=4, **training):
    return {
        "data": {"train": str(data_file), "valid_fraction": 0.2, "test_fraction": 0.1, "seed": 1},
        "model": {"cutoff": 3.5, "n_rbf": 4, "n_radial": 3, "l_max": 2, "nu_max": 2, "n_embed": 2,
                  "readout_hidden": [8]},
        "training": {"epochs": epochs, "batch_size": 2, "lr": 0.01, "dtype": "float64",
                     "loss": [{"from_epoch": 0, "energy": 10.0, "forces": 10.0, "stress": 100.0},
                              {"from_epoch": 3, "energy": 100.0, "forces": 10.0, "stress": 100.0}],
                     **training},
        "output": str(out),
    }


def read_log(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_training_lowers_the_loss_and_writes_a_model(data_file, tmp_path):
    result = train(recipe(data_file, tmp_path / "run", epochs=8), log=lambda *a: None)
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["epoch"] for r in log] == list(range(8))
    assert log[-1]["train_forces"] < 0.5 * log[0]["train_forces"]
    assert log[-1]["valid_forces_rmse_mev_per_a"] < log[0]["valid_forces_rmse_mev_per_a"]
    model = load_model(tmp_path / "run" / "model.pt")
    meta = model.metadata
    assert meta["metrics"]["test"]["n_structures"] == len(meta["split"]["test"]) == 2
    assert set(meta["split"]["train"]).isdisjoint(meta["split"]["valid"] + meta["split"]["test"])
    assert meta["recipe"]["model"]["cutoff"] == 3.5
    assert "stress_rmse_gpa" in meta["metrics"]["valid"]
    assert model.atomic_numbers == [29, 79]
    with open(tmp_path / "run" / "metrics.json") as fh:
        assert result.metrics == json.load(fh)


def test_resume_continues_the_same_run(data_file, tmp_path):
    straight = train(recipe(data_file, tmp_path / "a", epochs=4), log=lambda *a: None)
    train(recipe(data_file, tmp_path / "b", epochs=2), log=lambda *a: None)
    resumed = train(recipe(data_file, tmp_path / "b", epochs=4), resume=True, log=lambda *a: None)
    for (k, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=k)
    log_a, log_b = read_log(tmp_path / "a" / "log.jsonl"), read_log(tmp_path / "b" / "log.jsonl")
    assert [r["train_loss"] for r in log_a] == pytest.approx([r["train_loss"] for r in log_b], rel=1e-9)


def test_existing_run_is_not_overwritten_and_resume_needs_a_checkpoint(data_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(recipe(data_file, tmp_path / "r", epochs=1), resume=True, log=lambda *a: None)
    train(recipe(data_file, tmp_path / "r", epochs=1), log=lambda *a: None)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(recipe(data_file, tmp_path / "r", epochs=1), log=lambda *a: None)


def test_fit_e0_recovers_per_element_energies():
    images = emt_structures(8)
    true = {29: -3.7, 79: -2.1}
    for a in images:
        e = sum(true[z] for z in a.numbers)
        a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((len(a), 3)))
    frames = make_frames(images, [29, 79], 3.5, stress=False)
    np.testing.assert_allclose(fit_e0(frames, 2), [-3.7, -2.1], atol=1e-10)


def labelled(atoms, **labels):
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, **labels)
    return atoms


@pytest.mark.parametrize("case, match", [
    ("no_forces", "no forces label"),
    ("no_energy", "no energy label"),
    ("nan_forces", "NaN or infinite labels"),
    ("unknown_element", "element\\(s\\) Ag not supported"),
    ("no_stress", "no stress label"),
])
def test_bad_data_is_refused_clearly(case, match):
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    f = np.zeros((4, 3))
    images = {
        "no_forces": [labelled(a, energy=1.0)],
        "no_energy": [labelled(a, forces=f)],
        "nan_forces": [labelled(a, energy=1.0, forces=np.full((4, 3), np.nan))],
        "unknown_element": [labelled(bulk("Ag", "fcc", a=4.1), energy=1.0, forces=np.zeros((1, 3)))],
        "no_stress": [labelled(a, energy=1.0, forces=f)],
    }[case]
    with pytest.raises(DataError, match=match):
        make_frames(images, [29, 79], 3.5, stress=case == "no_stress", source="x.xyz")


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown key\\(s\\) in training: epoch"):
        TrainConfig.from_dict({"data": {"train": "x.xyz"}, "training": {"epoch": 3}})
    with pytest.raises(ValueError, match="data.train"):
        TrainConfig.from_dict({"data": {}})
    with pytest.raises(DataError, match="does not exist"):
        read_structures(tmp_path / "missing.xyz")


def test_cli_train_and_relative_paths(data_file, tmp_path, capsys):
    import yaml

    (tmp_path / "cfg").mkdir()
    cfg = recipe(data_file, "out", epochs=2)
    with open(tmp_path / "cfg" / "train.yaml", "w") as fh:
        yaml.safe_dump(cfg, fh)
    assert main(["train", str(tmp_path / "cfg" / "train.yaml")]) == 0
    assert (tmp_path / "cfg" / "out" / "model.pt").is_file()  # relative to the YAML file
    assert "best model (epoch" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "cfg" / "train.yaml")]) == 1  # refuses to overwrite
    assert "already holds a run" in capsys.readouterr().err


def test_extra_data_is_trained_on_with_its_weight(data_file, tmp_path):
    from cace_calc.model import CACE, CACEConfig
    from cace_calc.train.data import collate
    from cace_calc.train.trainer import loss_terms

    extra_file = tmp_path / "extra.xyz"
    write(extra_file, emt_structures(n=6, seed=5))
    cfg = recipe(data_file, tmp_path / "run", epochs=1)
    cfg["data"]["extra"] = [{"path": "extra.xyz", "weight": 0.25}]
    parsed = TrainConfig.from_dict(cfg, base=tmp_path)
    assert parsed.data.extra[0].path == str(tmp_path / "extra.xyz") and parsed.data.extra[0].weight == 0.25
    result = train(parsed, log=lambda *a: None)
    plain = train(recipe(data_file, tmp_path / "plain", epochs=1), log=lambda *a: None)
    split, plain_split = result.model.metadata["split"], plain.model.metadata["split"]
    assert split["extra"] == [{"path": "extra.xyz", "n": 6, "weight": 0.25}]
    assert {k: split[k] for k in ("train", "valid", "test")} == \
        {k: plain_split[k] for k in ("train", "valid", "test")}  # validation and test untouched

    # every loss term of a structure scales with its weight
    model = CACE(CACEConfig(elements=[29, 79], cutoff=3.5, n_rbf=4, n_radial=3, l_max=2, nu_max=2,
                            n_embed=2, readout_hidden=[8])).double()
    images = emt_structures(n=2, seed=7)
    full = loss_terms(model, collate(make_frames(images, [29, 79], 3.5, stress=True)), True)
    scaled = loss_terms(model, collate(make_frames(images, [29, 79], 3.5, stress=True, weight=0.25)), True)
    for k in ("energy", "forces", "stress"):
        assert torch.isclose(scaled[k], 0.25 * full[k], rtol=1e-12), k
    with pytest.raises(ValueError, match="weights must be positive"):
        TrainConfig.from_dict({**cfg, "data": {**cfg["data"], "extra": [{"path": "x", "weight": 0}]}})


def test_progress_lines_within_an_epoch_without_a_terminal(data_file, tmp_path, monkeypatch):
    """Not on a terminal (pytest captures stdout) the trainer logs the step and loss within an
    epoch every PROGRESS_EVERY_S seconds; progress=False keeps it quiet."""
    from cace_calc.train import trainer

    monkeypatch.setattr(trainer, "PROGRESS_EVERY_S", 0.0)  # a line after every step but the last
    lines = []
    train(recipe(data_file, tmp_path / "a", epochs=1), log=lines.append)
    steps = [line for line in lines if " step " in line]
    n_train = 24 - 5 - 2  # 20 % validation, 10 % test of 24 structures
    assert len(steps) == (n_train + 1) // 2 - 1  # batches of 2, none after the last step
    assert steps[0].startswith("epoch    0  step 1/9  train loss ") and "left in this epoch" in steps[0]
    quiet = []
    train(recipe(data_file, tmp_path / "b", epochs=1), progress=False, log=quiet.append)
    assert not [line for line in quiet if " step " in line]


def test_heads_from_a_parent_keep_its_predictions_and_get_calibrated(data_file, tmp_path):
    """Deviation heads trained alone (trainable: heads) on a parent: the prediction stays the
    parent's, the spread is trained by the likelihood and calibrated."""
    parent = train(recipe(data_file, tmp_path / "parent", epochs=2), log=lambda *a: None).model
    assert parent.config.zbl_radii is not None  # the core is on by default, placed from the data
    child_recipe = recipe(data_file, tmp_path / "child", epochs=3)
    child_recipe.update(init=str(tmp_path / "parent" / "model.pt"), e0="parent",
                        model={"n_heads": 3, "cutoff": 3.5})
    child_recipe["training"].update(trainable="heads", lr=0.01)
    child_recipe["training"]["loss"] = [{"from_epoch": 0, "energy": 0.0, "forces": 0.0, "energy_nll": 1.0}]
    result = train(child_recipe, log=lambda *a: None)
    child = result.model
    assert child.n_heads == 3 and child.config.cutoff == parent.config.cutoff
    assert child.config.zbl_radii == parent.config.zbl_radii  # the parent's core is kept
    sd_p, sd_c = parent.state_dict(), child.state_dict()
    for key in sd_p:
        if key not in ("e0",):
            assert torch.equal(sd_p[key], sd_c[key]), key  # nothing of the parent trained
    images = read_structures(data_file)[:3]
    from cace_calc import CACECalculator

    for a, b in zip(CACECalculator(parent).calculate_batch(images),
                    CACECalculator(child, uncertainty=True).calculate_batch(images)):
        assert b["energy"] == pytest.approx(a["energy"], abs=1e-9)
        np.testing.assert_allclose(b["forces"], a["forces"], atol=1e-9)
        assert b["energy_uncertainty"] > 0
    log = read_log(tmp_path / "child" / "log.jsonl")
    assert "train_energy_nll" in log[0] and log[-1]["train_energy_nll"] < log[0]["train_energy_nll"]
    assert "valid_energy_nll" in log[0]
    metrics = result.metrics
    # no loss stage weights stress, yet the validation and test errors include it (the data has it)
    assert "stress_rmse_gpa" in metrics["valid"] and "stress_rmse_gpa" in metrics["test"]
    assert "valid_stress_rmse_gpa" in log[-1]
    assert set(metrics["uncertainty_scale"]) == {"energy", "forces", "forces_members", "forces_per_element",
                                                 "forces_fraction_per_element", "forces_threshold_ev_per_a"}
    assert child.metadata["uncertainty"]["forces_threshold_ev_per_a"] > 0
    assert 0.85 <= metrics["calibration"]["valid"]["forces_members"]["coverage_2sigma"] <= 0.99
    # the energy's rigidity is fitted on the training split when training ends, and kept in the file
    from cace_calc import load_model

    assert child.has_rigidity and metrics["energy_rigidity"]["structures"] == len(child.metadata["split"]["train"])
    assert load_model(tmp_path / "child" / "model.pt").has_rigidity


def test_a_child_must_keep_its_parents_architecture(data_file, tmp_path):
    train(recipe(data_file, tmp_path / "parent", epochs=1), log=lambda *a: None)
    bad = recipe(data_file, tmp_path / "child", epochs=1)
    bad.update(init=str(tmp_path / "parent" / "model.pt"))
    bad["model"]["n_radial"] = 5
    with pytest.raises(ValueError, match="model.n_radial is 5 but the parent model"):
        train(bad, log=lambda *a: None)
    one_head = recipe(data_file, tmp_path / "one", epochs=1)
    one_head["training"]["loss"] = [{"from_epoch": 0, "energy_nll": 1.0}]
    with pytest.raises(ValueError, match="energy_nll needs a model with several heads"):
        train(one_head, log=lambda *a: None)


def test_extra_energy_weight_scales_the_energy_term_only():
    """data.extra energy_weight: the energy term of those structures is scaled by it, their
    forces keep the weight; written in the recipe as {path, weight, energy_weight}."""
    from conftest import make_model

    from cace_calc.train.data import collate
    from cace_calc.train.trainer import loss_terms

    model = make_model(elements=(29, 79), cutoff=4.0, seed=1)
    images = emt_structures(n=4)
    plain = collate(make_frames(images, [29, 79], 4.0, stress=False, weight=0.5))
    heavy = collate(make_frames(images, [29, 79], 4.0, stress=False, weight=0.5, energy_weight=2.0))
    a, b = loss_terms(model, plain, stress=False), loss_terms(model, heavy, stress=False)
    a, b = ({k: float(v.detach()) for k, v in t.items()} for t in (a, b))
    assert b["energy"] == pytest.approx(4.0 * a["energy"], rel=1e-12)
    assert b["forces"] == pytest.approx(a["forces"], rel=1e-12)
    cfg = TrainConfig.from_dict({"data": {"train": "x.xyz", "extra": [{"path": "e.xyz", "weight": 0.5,
                                                                       "energy_weight": 4.0}]}, "output": "o"})
    assert (cfg.data.extra[0].weight, cfg.data.extra[0].energy_weight) == (0.5, 4.0)
    with pytest.raises(ValueError, match="energy_weight >= 0"):
        TrainConfig.from_dict({"data": {"train": "x.xyz", "extra": [{"path": "e.xyz", "energy_weight": -1}]},
                               "output": "o"})


def test_extra_structures_may_lack_stress():
    """Extra data without stress labels (e.g. a teacher whose stresses are not trusted) enters
    the energy and force terms only; the main data must have every label asked for."""
    from cace_calc.train.data import collate

    images = emt_structures(n=2)
    plain = images[0].copy()
    plain.calc = SinglePointCalculator(plain, energy=images[0].get_potential_energy(), forces=images[0].get_forces())
    frames = make_frames([plain, images[1]], [29, 79], 4.0, stress=True, stress_optional=True)
    assert frames[0].stress is None and frames[1].stress is not None
    assert collate(frames).has_stress.tolist() == [False, True]
    with pytest.raises(DataError, match="has no stress label"):
        make_frames([plain], [29, 79], 4.0, stress=True)
    # an optional stress on a cell that is not periodic in all directions is dropped, a required one refused
    slab = images[1].copy()
    slab.pbc = [True, True, False]
    slab.calc = SinglePointCalculator(slab, **images[1].calc.results)
    assert make_frames([slab], [29, 79], 4.0, stress=True, stress_optional=True)[0].stress is None
    with pytest.raises(DataError, match="not periodic"):
        make_frames([slab], [29, 79], 4.0, stress=True)
