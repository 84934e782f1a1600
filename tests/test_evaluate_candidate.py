"""scripts/evaluate_candidate.py: the checks a retrained model goes through, and the command
that ships it (dry run: the checks themselves take minutes and live in their own scripts)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evaluate_candidate.py"


def load():
    spec = importlib.util.spec_from_file_location("evaluate_candidate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, folders", [
    ("nbmotaw", ["report", "dimers", "defects", "snap", "sanity", "elastic", "cascade"]),
    ("water", ["report", "dimers", "sanity"]),
])
def test_dry_run_lists_every_check_and_the_ship_command(name, folders, tmp_path, capsys):
    assert load().main([name, "--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("]")[0].lstrip("[") for line in lines[:-1]] == folders
    ship = lines[-1]
    assert ship.startswith(f"ship: python scripts/model_card.py {name} --update --run {tmp_path / 'run'}")
    for flag in ("--calibration", "--dimers", "--sanity") + (("--defects", "--snap", "--elastic") if name == "nbmotaw" else ()):
        assert flag in ship
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_relabel_names_the_models_as_the_card_shows_them(tmp_path):
    import json

    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"models": ["a.pt", "b.pt"], "dft_test": {"SNAP": {}, "a.pt": {"all": 1}},
                                "speed_ms_per_step": {"nbmotaw, eager": [1.0]}}))
    load().relabel(path, {"a.pt": "nbmotaw", "b.pt": "nbmotaw (previous release)"})
    out = json.loads(path.read_text())
    assert out["models"] == ["nbmotaw", "nbmotaw (previous release)"]
    assert out["dft_test"] == {"SNAP": {}, "nbmotaw": {"all": 1}}
    assert out["speed_ms_per_step"] == {"nbmotaw, eager": [1.0]}


def test_a_run_without_a_model_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="no model file"):
        load().main(["water", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
