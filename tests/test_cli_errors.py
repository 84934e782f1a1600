"""Every failure of a cace-calc command is one line `cace-calc CMD: error: ...` with exit status 1,
found before any expensive work starts (run in-process through cace_calc.cli.main)."""

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from conftest import make_model

from cace_calc.calculator import resolve_device
from cace_calc.checkpoint import load_model, save_model
from cace_calc.cli import main
from cace_calc.errors import ModelFileError
from cace_calc.phonons import compute_phonons


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    model = save_model(make_model(elements=(1, 8)), d / "tiny.pt")
    frames = []
    for k in range(3):
        a = molecule("H2O")
        a.positions += 0.01 * k
        frames.append(a)
    ase.io.write(d / "water.xyz", frames)
    (d / "train.xyz").write_text("")
    (d / "train.yaml").write_text(
        f"data:\n  train: {d / 'train.xyz'}\nmodel:\n  cutoff: 4.0\ntraining:\n  epochs: 1\n  device: cpu\n"
        f"output: {d / 'run'}\n")
    return {"dir": d, "model": str(model), "xyz": str(d / "water.xyz"), "yaml": str(d / "train.yaml")}


def _fails(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cace-calc {argv[0]}: error: ")
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["eval", "md", "ipi", "pimd", "phonons", "elastic", "train"])
def test_unknown_device_in_every_command(files, tmp_path, capsys, command):
    m, xyz, out = files["model"], files["xyz"], str(tmp_path / "out")
    argv = {
        "eval": ["eval", xyz, "--model", m],
        "md": ["md", xyz, "--model", m, "--steps", "1", "--out", out],
        "ipi": ["ipi", "--model", m, "--unix", "never-opened", "--template", xyz],
        "pimd": ["pimd", xyz, "--model", m, "--beads", "1", "--steps", "1", "--out", out],
        "phonons": ["phonons", "bcc:H:3.0", "--model", m, "--out", out],
        "elastic": ["elastic", "bcc:H:3.0", "--model", m],
        "train": ["train", files["yaml"], "--output", out],
    }[command]
    _fails(capsys, [*argv, "--device", "banana"], "device='banana' is not a device")
    assert not (tmp_path / "out").exists()  # nothing started: no i-PI, no MD, no training folder


def test_resolve_device_messages():
    with pytest.raises(ValueError, match="is not a device"):
        resolve_device("banana")
    with pytest.raises(ValueError, match="holds no data"):
        resolve_device("meta")
    assert resolve_device("cpu") == torch.device("cpu")


def test_threads_must_be_positive(files, tmp_path, capsys):
    _fails(capsys, ["md", files["xyz"], "--model", files["model"], "--threads", "0", "--out", str(tmp_path)],
           "--threads must be at least 1")


def test_train_recipe_errors(files, tmp_path, capsys):
    recipe = files["dir"] / "train.yaml"
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text(recipe.read_text().replace("  cutoff: 4.0\n", "  cutoff: 4.0\n  bogus: 3\n"))
    _fails(capsys, ["train", str(bad_key)], "unknown key(s) in model: bogus")
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("model: [1, 2\n  cutoff: : 3\n")
    _fails(capsys, ["train", str(malformed)], "is not valid YAML at line 2, column 9")
    _fails(capsys, ["train", str(recipe), "--epochs", "0", "--output", str(tmp_path / "run")],
           "epochs and training.batch_size must be at least 1")
    assert not (tmp_path / "run").exists()


def test_convert_to_a_directory(tmp_path, capsys):
    # checked before the original file is even read
    _fails(capsys, ["convert", str(tmp_path / "missing.pth"), str(tmp_path)], "is a directory; give a file name")


def test_phonons_negative_supercell(files, tmp_path, capsys):
    _fails(capsys, ["phonons", "bcc:H:3.0", "--model", files["model"], "--supercell", "-1", "2", "2",
                    "--out", str(tmp_path / "ph")], "--supercell takes three positive integers, got -1 2 2")
    with pytest.raises(ValueError, match="negative determinant"):
        compute_phonons(bulk("H", "bcc", a=3.0), files["model"], supercell=(-1, 2, 2))


def test_md_index_out_of_range(files, tmp_path, capsys):
    _fails(capsys, ["md", files["xyz"], "--index", "999", "--model", files["model"], "--out", str(tmp_path)],
           "has no frame '999': it holds 3 frames (0 to 2, or -1 for the last)")


def test_unknown_element_in_shorthand(files, capsys):
    _fails(capsys, ["elastic", "bcc:Xx:3.17", "--model", files["model"]], "'Xx' is not a chemical element symbol")
    _fails(capsys, ["phonons", "fcc:Cu:0", "--model", files["model"]], "lattice constant must be positive")


def _payload(files):
    return torch.load(files["model"], weights_only=True)


def test_bad_model_files(files, tmp_path, capsys):
    xyz = files["xyz"]
    random = tmp_path / "random.pt"
    random.write_bytes(np.random.default_rng(0).bytes(4000))
    line = _fails(capsys, ["eval", xyz, "--model", str(random)], "corrupt or not a cace_calc model")
    assert "weights_only" not in line

    p = _payload(files)
    p["format_version"] = "1"
    torch.save(p, tmp_path / "string_version.pt")
    _fails(capsys, ["eval", xyz, "--model", str(tmp_path / "string_version.pt")],
           "invalid model format version '1'")

    folder = tmp_path / "run"
    folder.mkdir()
    _fails(capsys, ["eval", xyz, "--model", str(folder)], "is a directory, not a model file, and holds no model.pt")
    save_model(make_model(elements=(1, 8)), folder / "model.pt")  # a training run's folder: its model.pt
    assert main(["eval", xyz, "--model", str(folder), "--quiet"]) == 0

    p = _payload(files)
    p["state_dict"]["readout.weight_0"][0, 0, 0] = float("nan")
    torch.save(p, tmp_path / "nan.pt")
    with pytest.raises(ModelFileError, match=r"non-finite \(NaN or inf\) values in readout.weight_0"):
        load_model(tmp_path / "nan.pt")
    _fails(capsys, ["eval", xyz, "--model", str(tmp_path / "nan.pt")], "is corrupt: non-finite")


def test_unexpected_errors_are_one_line(files, capsys, monkeypatch):
    import cace_calc.evaluate

    def boom(*args, **kwargs):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(cace_calc.evaluate, "read_structures", boom)
    monkeypatch.delenv("CACE_CALC_TRACEBACK", raising=False)
    _fails(capsys, ["eval", files["xyz"], "--model", files["model"]], "RuntimeError: something unforeseen")
    monkeypatch.setenv("CACE_CALC_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="unforeseen"):
        main(["eval", files["xyz"], "--model", files["model"]])


def test_pimd_failure_is_one_line(files, tmp_path, capsys, monkeypatch):
    import cace_calc.pimd

    def failing(*args, **kwargs):
        raise RuntimeError("driver 0 failed (exit code 1); end of driver-0.log:\n  line one\n  line two")

    monkeypatch.setattr(cace_calc.pimd, "run_pimd", failing)
    _fails(capsys, ["pimd", files["xyz"], "--model", files["model"], "--out", str(tmp_path / "p")],
           "driver 0 failed (exit code 1); end of driver-0.log: line one line two")
