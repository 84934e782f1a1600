"""Fine-tuning: a parent adapted to new labels (another energy reference, other forces), E0
refit on a degenerate composition, and one-line errors on bad input before anything is written."""

import json

import numpy as np
import torch
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from cace_calc.cli import main
from cace_calc.train import DataError, train
from cace_calc.train.finetune import finetune

from test_training import emt_structures, recipe


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A small model trained on EMT Cu/Au (2 epochs: rough on purpose)."""
    root = tmp_path_factory.mktemp("parent")
    write(root / "emt.xyz", emt_structures())
    train(recipe(root / "emt.xyz", root / "run", epochs=2), log=lambda *a: None)
    return root / "run" / "model.pt"


def shifted_copper(n=10, seed=5, shift=-3.0):
    """Pure Cu cells (one composition: E0 degenerate) labelled by EMT with energies shifted by
    ``shift`` eV per atom (another energy reference) and forces scaled by 1.3 (another set-up)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.positions += rng.normal(scale=0.1, size=(4, 3))
        atoms.calc = EMT()
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e + shift * len(atoms), forces=1.3 * f)
        out.append(atoms)
    return out


def test_finetune_adapts_the_parent_and_refits_e0(parent, tmp_path):
    write(tmp_path / "mine.xyz", shifted_copper())
    res = finetune(parent, [tmp_path / "mine.xyz"], output=tmp_path / "ft", epochs=12, valid_fraction=0.2,
                   device="cpu", log=lambda *a: None)
    assert res.after["forces_rmse_mev_per_a"] < 0.85 * res.before["forces_rmse_mev_per_a"]
    # the -3 eV/atom reference change is taken up by E0, not left as an error
    assert abs(res.before["energy_offset_mev_per_atom"]) > 2000
    assert res.after["energy_rmse_mev_per_atom"] < 100
    meta = res.run.model.metadata
    assert meta["recipe"]["init"] == str(parent) and meta["recipe"]["e0"] == "refit"
    assert meta["recipe"]["data"]["train"] == [str(tmp_path / "mine.xyz")]
    assert (tmp_path / "ft" / "log.jsonl").is_file() and "fine-tuned" in res.table
    errors = json.loads((tmp_path / "ft" / "errors.json").read_text())
    assert errors["after"]["forces_rmse_mev_per_a"] == pytest.approx(res.after["forces_rmse_mev_per_a"])
    # only Cu in the data: E0(Au) keeps the parent's value
    from cace_calc import load_model

    p, c = load_model(parent), res.run.model
    assert float(c.e0[1]) == pytest.approx(float(p.e0[1]))
    assert float(c.e0[0]) == pytest.approx(float(p.e0[0]) - 3.0, abs=0.1)


def test_keep_e0_keeps_the_parents(parent, tmp_path):
    write(tmp_path / "mine.xyz", shifted_copper(n=4, shift=0.0))
    res = finetune(parent, [tmp_path / "mine.xyz"], output=tmp_path / "ft", epochs=1, keep_e0=True, device="cpu",
                   log=lambda *a: None)
    from cace_calc import load_model

    assert np.allclose(res.run.model.e0.numpy(), load_model(parent).e0.numpy())


@pytest.mark.parametrize("case, match", [
    ("no_forces", "has no forces label"),
    ("unknown_element", "holds Ni, which the parent model"),
    ("empty", "no structures|does not exist|is empty|not read"),
    ("one", "at least 2 labelled structures"),
])
def test_bad_data_is_refused_before_anything_is_written(parent, tmp_path, case, match):
    path = tmp_path / "bad.xyz"
    images = shifted_copper(n=3)
    if case == "no_forces":
        a = images[1]
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy())
    if case == "unknown_element":
        images[2].numbers[0] = 28
    if case == "one":
        images = images[:1]
    if case == "empty":
        path.write_text("")
    else:
        write(path, images)
    with pytest.raises((DataError, ValueError), match=match):
        finetune(parent, [path], output=tmp_path / "out", epochs=1, device="cpu", log=lambda *a: None)
    assert not (tmp_path / "out").exists()


def test_cli_finetune(parent, tmp_path, capsys):
    write(tmp_path / "mine.xyz", shifted_copper(n=5))
    out = tmp_path / "ft"
    assert main(["finetune", str(parent), str(tmp_path / "mine.xyz"), "--output", str(out), "--epochs", "2",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "errors on the 1 validation structures" in text and "fine-tuned" in text
    assert (out / "model.pt").is_file()
    assert main(["finetune", str(parent), str(tmp_path / "nothing.xyz"), "--output", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1
    assert main(["finetune", str(parent), str(tmp_path / "mine.xyz"), "--replay", str(tmp_path / "gone.xyz"),
                 "--output", str(tmp_path / "y")]) == 1
    assert "gone.xyz" in capsys.readouterr().err and not (tmp_path / "y" / "model.pt").exists()
    assert main(["finetune", str(parent), str(tmp_path / "mine.xyz"), "--replay-weight", "0.5"]) == 1
    assert "--replay-weight needs --replay" in capsys.readouterr().err


def test_readout_only_keeps_the_representation(parent, tmp_path):
    """trainable='readout': every weight outside the readout stays the parent's; the readout moves."""
    from cace_calc import load_model

    write(tmp_path / "mine.xyz", shifted_copper())
    res = finetune(parent, [tmp_path / "mine.xyz"], output=tmp_path / "ft", epochs=3, device="cpu",
                   trainable="readout", log=lambda *a: None)
    p, c = load_model(parent).state_dict(), res.run.model.state_dict()
    moved = {k for k in p if p[k].is_floating_point() and k != "e0"
             and not torch.allclose(p[k], c[k].to(p[k].dtype), rtol=1e-6, atol=1e-7)}
    assert moved and all(k.startswith("readout.") for k in moved)
    assert res.run.model.metadata["recipe"]["training"]["trainable"] == "readout"


def test_representation_lr_and_replay(parent, tmp_path):
    """representation_lr gives the representation its own learning rate (a smaller step: it
    moves less than with the default); replay files enter as weighted extra data."""
    from cace_calc import load_model
    from cace_calc.train.parent import parameter_groups

    model = load_model(parent).requires_grad_(True)
    groups = parameter_groups(model, 1e-3, 0.1)
    readout = {id(p) for p in model.readout.parameters()}
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4])
    assert all(id(p) in readout for p in groups[0]["params"]) and not any(id(p) in readout for p in groups[1]["params"])
    assert len(parameter_groups(model, 1e-3, 1.0)) == 1  # as checkpoints before the option

    write(tmp_path / "mine.xyz", shifted_copper())
    write(tmp_path / "old.xyz", emt_structures()[:4])
    p = model.state_dict()
    shift = {}
    for factor in (1.0, 0.01):
        out = tmp_path / f"ft{factor}"
        res = finetune(parent, [tmp_path / "mine.xyz"], output=out, epochs=2, device="cpu", representation_lr=factor,
                       replay=[tmp_path / "old.xyz"], replay_weight=0.5, log=lambda *a: None)
        c = res.run.model.state_dict()
        shift[factor] = sum(float((c[k].to(p[k].dtype) - p[k]).abs().sum()) for k in p
                            if p[k].is_floating_point() and not k.startswith("readout.") and k != "e0")
        (extra,) = res.run.model.metadata["recipe"]["data"]["extra"]
        assert (extra["path"], extra["weight"]) == (str(tmp_path / "old.xyz"), 0.5)
    assert 0 < shift[0.01] < 0.2 * shift[1.0]
