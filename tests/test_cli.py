"""The cace-calc command line."""

import pytest
from conftest import REFERENCE

from cace_calc import load_model
from cace_calc.cli import main


@pytest.mark.requires_shared
def test_convert(tmp_path, capsys):
    out = tmp_path / "water.pt"
    rc = main(["convert", str(REFERENCE / "cace_water_cacefit.pth"), str(out),
               "--e0", str(REFERENCE / "cace_water_cacefit_e0.json")])
    assert rc == 0
    assert "69320 parameters" in capsys.readouterr().out
    model = load_model(out)
    assert model.e0.tolist() == [-187.6043857100553, -93.80219285502734]


def test_convert_missing_file(tmp_path, capsys):
    rc = main(["convert", str(tmp_path / "none.pth"), str(tmp_path / "out.pt")])
    assert rc == 1
    assert "does not exist" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "convert" in capsys.readouterr().out


def test_info(capsys):
    from cace_calc import load_model

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cace_calc" in out
    # each pretrained model with its elements and the test-split errors from its metadata
    test = load_model("water").metadata["metrics"]["test"]
    assert "water: H O, cutoff 5.5 A" in out
    assert f"E {test['energy_rmse_mev_per_atom']:.2f} meV/atom, F {test['forces_rmse_mev_per_a']:.1f} meV/A" in out
    assert "nbmotaw (alias hea): Nb Mo Ta W" in out and "stress" in out


def test_help_exits_cleanly():
    with pytest.raises(SystemExit) as e:
        main(["convert", "--help"])
    assert e.value.code == 0


COMMANDS = ["info", "eval", "md", "pimd", "ipi", "phonons", "elastic", "defects", "train", "finetune", "convert",
            "lammps"]


def test_every_command_is_listed_with_a_one_line_help():
    import argparse

    from cace_calc.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == COMMANDS
    text = parser.format_help()
    for action in sub._choices_actions:
        assert action.help and f"    {action.dest} " in text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cace-calc {command}")
    assert f"\n  cace-calc {command}" in out  # an example line


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("cace_calc ")
