"""cace-calc phonons and cace-calc elastic on small model files."""

import json
import re

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from conftest import make_model

from cace_calc import save_model
from cace_calc.bulk import lattice_summary, read_structure
from cace_calc.cli import main
from cace_calc.elastic import elastic_constants


@pytest.fixture(scope="module")
def cu_model(tmp_path_factory):
    # seed 2: this random Cu model has an E(V) minimum near a = 3.45 A (fcc)
    return save_model(make_model(elements=(29,), cutoff=4.0, seed=2), tmp_path_factory.mktemp("m") / "cu.pt")


def test_phonons(cu_model, tmp_path, capsys):
    out = tmp_path / "ph"
    rc = main(["phonons", "fcc:Cu:3.45", "--model", str(cu_model), "--supercell", "2", "2", "2", "--out",
               str(out), "--no-relax", "--mesh", "4", "4", "4", "--t-max", "300", "--t-step", "100",
               "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Phonons of Cu (1 atoms in the unit cell, supercell 2 2 2, 1 displacements of 0.01 A)" in captured.out
    assert "  face-centred cubic, a = 3.4500 A (cell lengths 2.4395, 2.4395, 2.4395 A)" in captured.out
    for name in ("phonopy_params.yaml", "band.yaml", "total_dos.dat", "thermal_properties.yaml",
                 "bands_dos.png", "thermal.png"):
        assert (out / name).stat().st_size > 100
    temps = re.findall(r"- temperature:\s+([0-9.]+)", (out / "thermal_properties.yaml").read_text())
    assert [float(t) for t in temps] == [0.0, 100.0, 200.0, 300.0]


def test_elastic_json_matches_library(cu_model, capsys):
    rc = main(["elastic", "fcc:Cu:3.45", "--model", str(cu_model), "--no-relax", "--json", "--n-steps", "3",
               "--delta", "0.01", "--eos", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads(captured.out)  # nothing but JSON on stdout
    ref = elastic_constants(bulk("Cu", "fcc", a=3.45), str(cu_model), relax=False, n_steps=3, delta=0.01,
                            device="cpu")
    np.testing.assert_allclose(data["C_GPa"], ref.C, atol=1e-8)
    assert data["born_stable"] == ref.stable
    assert {"v0_A3", "b0_GPa", "b0_prime"} <= set(data["eos"])


def test_elastic_table(cu_model, tmp_path, capsys):
    ase.io.write(tmp_path / "cu.xyz", bulk("Cu", "fcc", a=3.45, cubic=True), format="extxyz")
    rc = main(["elastic", str(tmp_path / "cu.xyz"), "--model", str(cu_model), "--no-relax", "--n-steps", "3",
               "--device", "cpu", "--symmetry", "cubic"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Elastic constants (GPa) of Cu4 (4 atoms; primitive cubic, a = 3.4500 A" in out
    assert "Born stability:" in out and "bulk modulus" in out


def test_errors(cu_model, tmp_path, capsys):
    ase.io.write(tmp_path / "h2o.xyz", molecule("H2O"))
    assert main(["elastic", str(tmp_path / "h2o.xyz"), "--model", str(cu_model)]) == 1
    assert "periodic" in capsys.readouterr().err
    assert main(["phonons", "bcc:Xx:3", "--model", str(cu_model)]) == 1
    assert "bcc:Xx:3" in capsys.readouterr().err
    assert main(["phonons", "fcc:Cu:3.6", "--model", str(tmp_path / "missing.pt")]) == 1
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["elastic", "fcc:Cu:3.6"])  # --model is required


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "phonons" in out and "elastic" in out


def test_read_structure_shorthand():
    w = read_structure("bcc:W:3.17")
    assert len(w) == 1 and w.get_volume() == pytest.approx(3.17**3 / 2)
    assert read_structure("fcc:Cu").get_volume() == pytest.approx(bulk("Cu").get_volume())
    with pytest.raises(ValueError, match="shorthand"):
        read_structure("W-bcc")


def _example(monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "elastic_phonons_bcc.py"
    monkeypatch.syspath_prepend(str(path.parent))  # the examples import their helpers from _common.py
    spec = importlib.util.spec_from_file_location("elastic_phonons_bcc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_without_model(tmp_path, capsys, monkeypatch):
    example = _example(monkeypatch)
    missing = str(tmp_path / "missing.pt")
    assert example.main(["--fast", "--model", missing, "--out", str(tmp_path / "out")]) == 0
    assert "cannot run this example" in capsys.readouterr().err
    assert example.main(["--model", missing, "--out", str(tmp_path / "out")]) == 1
    alloy = example.random_alloy(2, seed=0)
    symbols = alloy.get_chemical_symbols()
    assert len(alloy) == 16 and [symbols.count(s) for s in ("Nb", "Mo", "Ta", "W")] == [4, 4, 4, 4]


@pytest.mark.parametrize("atoms,expected", [
    (bulk("W", "bcc", a=3.19), "body-centred cubic, a = 3.1900 A (cell lengths 2.7626, 2.7626, 2.7626 A)"),
    (bulk("Cu", "fcc", a=3.6), "face-centred cubic, a = 3.6000 A"),
    (bulk("Mg", "hcp", a=3.2, c=5.2), "primitive hexagonal, a = 3.2000 A, c = 5.2000 A"),
])
def test_lattice_summary_gives_the_conventional_constant(atoms, expected):
    assert lattice_summary(atoms).startswith(expected)
