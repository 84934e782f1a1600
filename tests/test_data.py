"""Structures shipped in cace_calc.data: what they are, that they are installed, and that the
commands take them by name."""

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.build import bulk

from cace_calc.bulk import read_structure
from cace_calc.data import list_structures, resolve_structure_file, structure, structure_path
from cace_calc.evaluate import read_structures

ROOT = Path(__file__).resolve().parents[1]


def test_list_and_fresh_copies():
    assert list_structures() == ["nbmotaw-128", "water-64"]
    a = structure("water-64")
    a.positions += 1.0
    assert not np.allclose(structure("water-64").positions, a.positions)
    with pytest.raises(KeyError, match="no shipped structure named 'ice'; available: nbmotaw-128, water-64"):
        structure("ice")


def test_water_box_is_an_intact_liquid_at_ambient_density():
    atoms = structure("water-64")
    assert atoms.get_chemical_formula() == "H128O64" and atoms.pbc.all()
    assert np.allclose(atoms.cell.angles(), 90.0)
    density = atoms.get_masses().sum() * units._amu * 1e3 / (atoms.get_volume() * 1e-24)  # g/cm3
    assert density == pytest.approx(0.997, abs=1e-3)
    d = atoms.get_all_distances(mic=True)
    h, o = atoms.numbers == 1, atoms.numbers == 8
    d_ho = d[np.ix_(h, o)]
    assert d_ho.min(axis=1).max() < 1.2  # every H bonded to an O
    assert (np.bincount(d_ho.argmin(axis=1), minlength=64) == 2).all()  # every O has two H
    oo = d[np.ix_(o, o)][~np.eye(64, dtype=bool)]
    assert 2.3 < oo.min() < 2.8  # hydrogen-bonded neighbours, no overlaps
    assert not atoms.get_momenta().any()  # positions only: MD draws its own velocities


def test_nbmotaw_is_an_equimolar_bcc_sqs():
    atoms = structure("nbmotaw-128")
    assert Counter(atoms.get_chemical_symbols()) == {"Nb": 32, "Mo": 32, "Ta": 32, "W": 32}
    a = atoms.cell.lengths()[0] / 4
    ideal = bulk("W", "bcc", a=a, cubic=True).repeat(4)
    np.testing.assert_allclose(atoms.positions, ideal.positions, atol=1e-6)  # unrelaxed bcc sites
    d = atoms.get_all_distances(mic=True)
    z = atoms.numbers
    for shell in (np.sqrt(3) / 2 * a, a):  # first and second neighbours: like a random alloy
        i, j = np.nonzero(np.isclose(d, shell, atol=1e-3))
        same = (z[i] == z[j]).mean()
        assert same == pytest.approx(0.25, abs=0.01)


def test_files_are_package_data():
    """Every shipped file is matched by pyproject's package-data, so installed users get it."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        cfg = tomllib.load(fh)["tool"]["setuptools"]
    assert "cace_calc.data" in cfg["packages"]
    patterns = cfg["package-data"]["cace_calc.data"]
    files = [p.name for p in (ROOT / "cace_calc" / "data").iterdir() if p.suffix == ".xyz"]
    assert sorted(files) == ["nbmotaw-128.xyz", "water-64.xyz"]
    assert all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files)


def test_names_work_where_files_do(tmp_path):
    assert resolve_structure_file("water-64") == structure_path("water-64")
    own = tmp_path / "water-64"  # an existing file wins over the shipped name
    own.write_text("")
    assert resolve_structure_file(own) == own
    assert len(read_structures("water-64")[0]) == 192
    assert len(read_structure("nbmotaw-128")) == 128
    with pytest.raises(FileNotFoundError, match=r"'\.\./shared/data/x\.xyz' does not exist \(a path in shared/: "
                                                r"the project's development data.*usable by name: nbmotaw-128"):
        read_structures("../shared/data/x.xyz")
    with pytest.raises(FileNotFoundError, match=r"'y\.xyz' does not exist; structures shipped"):
        resolve_structure_file("y.xyz")


def test_missing_training_data_in_shared_says_what_it_is(tmp_path):
    from cace_calc.train import DataError
    from cace_calc.train.data import read_structures as read_training_data

    with pytest.raises(DataError, match=r"does not exist \(a path in shared/: the project's development data"):
        read_training_data(tmp_path / "shared" / "data" / "water.xyz")
    with pytest.raises(DataError, match=r"does not exist$"):
        read_training_data(tmp_path / "water.xyz")
