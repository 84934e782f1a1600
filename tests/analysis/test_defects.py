"""Point defects of bcc metals: the defect cells, the formation energy formula, and the shipped
nbmotaw model's vacancies and interstitials against the published PBE range."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from cace_calc import CACECalculator
from cace_calc.defects import DEFECT_KINDS, bcc_defect_cell, point_defects


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_cells(kind):
    a = 3.2
    atoms = bcc_defect_cell("W", a, kind, repeat=3)
    assert len(atoms) == 54 + (-1 if kind == "vacancy" else 1)
    d = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)]
    nn = a * np.sqrt(3) / 2
    if kind == "vacancy":
        assert d.min() == pytest.approx(nn)
    elif kind in ("111", "110", "100"):
        assert d.min() == pytest.approx(2 / 3 * nn)  # the dumbbell pair
        dist = atoms.get_distances(len(atoms) - 1, range(len(atoms) - 1), mic=True)
        axis = atoms.get_distance(len(atoms) - 1, int(np.argmin(dist)), mic=True, vector=True)
        expected = np.array([int(c) for c in kind], float)
        assert abs(axis @ expected) / np.linalg.norm(expected) == pytest.approx(np.linalg.norm(axis))
    else:
        assert d.min() == pytest.approx(a / 2 if kind == "octahedral" else a * np.sqrt(5) / 4)


def test_formation_energy_formula():
    """E_f = E(N-1 relaxed) - (N-1)/N E(N), and an interstitial costs more than a vacancy."""
    calc = EMT()
    res = point_defects(calc, "Cu", ["vacancy", "octahedral"], repeat=3, a=2.87, fmax=0.05)
    perfect = bulk("Cu", "bcc", a=2.87, cubic=True).repeat(3)
    perfect.calc = calc
    e0 = perfect.get_potential_energy()
    vac = res["vacancy"]
    assert vac.n_atoms == 53
    assert vac.formation_energy == pytest.approx(vac.structure.get_potential_energy() - 53 / 54 * e0)
    assert np.abs(vac.structure.get_forces()).max() < 0.05
    assert vac.max_displacement > 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        bcc_defect_cell("W", 3.2, "split")
    with pytest.raises(ValueError, match="not bcc"):
        point_defects(EMT(), "Cu", ["vacancy"])


def test_nbmotaw_vacancy_and_interstitial():
    """The shipped model: W's vacancy within 15 % of PBE's 3.2 eV, its self-interstitial far above."""
    res = point_defects(CACECalculator("nbmotaw", dtype="float64"), "W", ["vacancy", "111"], repeat=3,
                        fmax=0.02)
    assert 0.85 * 3.2 <= res["vacancy"].formation_energy <= 1.15 * 3.2
    assert res["111"].formation_energy > 2 * res["vacancy"].formation_energy


def test_cli_defects(tmp_path, capsys):
    """cace-calc defects prints the formation energies the library gives and writes them."""
    import json

    from cace_calc.cli import main

    rc = main(["defects", "W", "--model", "nbmotaw", "--kinds", "vacancy", "111", "--repeat", "2", "--fmax", "0.05",
               "--device", "cpu", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads((tmp_path / "defects.json").read_text())["defects"]["W"]
    assert data["vacancy"]["n_atoms"] == 15 and data["111"]["n_atoms"] == 17
    line = next(x for x in captured.out.splitlines() if x.startswith("W "))
    assert [float(v) for v in line.split()[1:]] == pytest.approx(
        [data["vacancy"]["formation_energy_ev"], data["111"]["formation_energy_ev"]], abs=1e-3)
    assert (tmp_path / "W-relaxed.extxyz").is_file()
    assert main(["defects", "W", "--model", "nbmotaw", "--repeat", "1"]) == 1
    assert "--repeat must be at least 2" in capsys.readouterr().err
