"""The cace-calc command line."""

import pytest

from cace_calc import load_model
from cace_calc.cli import main
from conftest import REFERENCE


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
    assert main(["info"]) == 0
    assert "cace_calc" in capsys.readouterr().out


def test_help_exits_cleanly():
    with pytest.raises(SystemExit) as e:
        main(["convert", "--help"])
    assert e.value.code == 0
