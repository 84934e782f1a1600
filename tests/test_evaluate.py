"""cace-calc eval and cace_calc.evaluate: batched predictions, extended XYZ output, error metrics."""

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import make_model, periodic_cell, slab, water_cluster

from cace_calc import CACECalculator, save_model
from cace_calc.cli import main
from cace_calc.errors import UnsupportedElementError
from cace_calc.evaluate import error_metrics, evaluate_structures, read_structures


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_model(make_model(elements=(1, 6, 8), cutoff=4.0), tmp_path_factory.mktemp("model") / "m.pt")


def structures():
    """A cluster (no cell), a fully periodic cell and a slab, with extra info and arrays."""
    images = [water_cluster(), periodic_cell(), slab()]
    for k, atoms in enumerate(images):
        atoms.info["config_type"] = f"kind{k}"
        atoms.arrays["tag_array"] = np.arange(len(atoms)) * (k + 1)
    return images


def labelled(images, calc):
    """Copies labelled with the model's own results shifted by known offsets: energy +1 meV/atom,
    forces +0.01 eV/A on every component, stress +0.001 eV/A^3 on every component."""
    out = []
    for atoms, res in zip(images, calc.calculate_batch(images)):
        a = atoms.copy()
        labels = {"energy": res["energy"] + 1e-3 * len(a), "forces": res["forces"] + 0.01}
        if "stress" in res:
            labels["stress"] = res["stress"] + 1e-3
        a.calc = SinglePointCalculator(a, **labels)
        out.append(a)
    return out


def test_metrics_of_known_offsets(model_file):
    calc = CACECalculator(model_file)
    res = evaluate_structures(labelled(structures(), calc), calc, progress=False)
    m = res.metrics
    assert m["n_structures"] == 3 and m["energy_n"] == 3 and m["forces_n"] == 3
    assert m["stress_n"] == 1  # only the fully periodic cell has a stress
    assert m["energy_rmse_mev_per_atom"] == pytest.approx(1.0, abs=1e-9)
    assert m["energy_mae_mev_per_atom"] == pytest.approx(1.0, abs=1e-9)
    assert m["forces_rmse_mev_per_a"] == pytest.approx(10.0, abs=1e-9)
    # Voigt +0.001 on all six becomes +0.001 on all nine 3x3 components
    assert m["stress_rmse_gpa"] == pytest.approx(1e-3 / units.GPa, rel=1e-9)
    assert "energy per atom (meV/atom)" in res.table() and "stress (GPa)" in res.table()
    # the +1 meV/atom of the labels is one constant: all offset, nothing left after removing it
    assert m["energy_offset_mev_per_atom"] == pytest.approx(-1.0, abs=1e-9)
    assert m["energy_rmse_after_offset_mev_per_atom"] == pytest.approx(0.0, abs=1e-9)
    assert "mean offset -1.00 meV/atom" in res.table()
    assert "another energy reference" not in res.table()  # 1 meV/atom is not worth a word


def test_an_energy_reference_change_is_reported_as_such(model_file):
    calc = CACECalculator(model_file)
    images = structures()
    shifted = []
    for k, (atoms, res) in enumerate(zip(images, calc.calculate_batch(images))):
        a = atoms.copy()  # another reference: -151 eV per atom, plus 2 meV/atom of scatter
        a.calc = SinglePointCalculator(a, energy=res["energy"] - 151.0 * len(a) + (k - 1) * 2e-3 * len(a),
                                       forces=res["forces"])
        shifted.append(a)
    res = evaluate_structures(shifted, calc, progress=False)
    assert res.metrics["energy_offset_mev_per_atom"] == pytest.approx(151000.0, abs=1e-3)
    assert res.metrics["energy_rmse_after_offset_mev_per_atom"] == pytest.approx(np.std([-2.0, 0.0, 2.0]), abs=1e-6)
    assert "probably use another energy reference" in res.table()


def test_error_metrics_by_hand():
    pred = [{"energy": 1.0, "forces": np.zeros((2, 3))}, {"energy": 0.0, "forces": np.zeros((1, 3))}]
    ref = [{"energy": 0.0, "forces": np.full((2, 3), 0.003)}, {"forces": np.full((1, 3), -0.006)}]
    m = error_metrics(pred, ref, [2, 1])
    assert m["energy_n"] == 1 and m["energy_rmse_mev_per_atom"] == pytest.approx(500.0)
    f = np.array([3.0] * 6 + [6.0] * 3)
    assert m["forces_rmse_mev_per_a"] == pytest.approx(np.sqrt(np.mean(f**2)))
    assert m["forces_mae_mev_per_a"] == pytest.approx(4.0)
    assert "stress_n" not in m
    assert error_metrics(pred, [{}, {}], [2, 1]) == {}


def test_batches_of_any_size_give_the_same_results(model_file):
    images = structures()
    calc = CACECalculator(model_file)
    ref = calc.calculate_batch(images)
    for max_atoms in (1, 15, 20000):  # one structure per call, two groups, all in one call
        res = evaluate_structures(images, calc, max_atoms=max_atoms, progress=False)
        for atoms, r in zip(res.images, ref):
            assert atoms.get_potential_energy() == pytest.approx(r["energy"], abs=1e-10)
            np.testing.assert_allclose(atoms.get_forces(), r["forces"], atol=1e-10)
            np.testing.assert_allclose(atoms.get_potential_energies(), r["energies"], atol=1e-10)
    assert res.metrics == {}  # no labels
    assert "stress" in res.images[1].calc.results and "stress" not in res.images[2].calc.results


def test_any_ase_calculator_one_by_one():
    images = [bulk("Cu", "fcc", a=3.6, cubic=True), bulk("Cu", "fcc", a=3.7, cubic=True)]
    images[0].positions[0] += 0.05
    for atoms in images:
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                           forces=atoms.get_forces(), stress=atoms.get_stress())
    res = evaluate_structures(images, EMT(), progress=False)
    assert res.metrics["stress_n"] == 2
    for key in ("energy_rmse_mev_per_atom", "forces_rmse_mev_per_a", "stress_rmse_gpa"):
        assert res.metrics[key] < 1e-9


def test_cli_eval_round_trip(model_file, tmp_path, capsys):
    calc = CACECalculator(model_file)
    images = labelled(structures(), calc)
    src, out = tmp_path / "in.xyz", tmp_path / "out.xyz"
    ase.io.write(src, images, format="extxyz")
    assert main(["eval", str(src), "--model", str(model_file), "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "read 3 structures (29 atoms)" in text
    assert "errors vs the reference labels (3 structures)" in text
    assert "energy per atom (meV/atom)" in text and "1.00" in text
    assert f"wrote {out}" in text

    back = ase.io.read(out, ":")
    ref = calc.calculate_batch(ase.io.read(src, ":"))
    for atoms, orig, r in zip(back, images, ref):
        assert atoms.get_potential_energy() == pytest.approx(r["energy"], abs=1e-8)
        np.testing.assert_allclose(atoms.get_forces(), r["forces"], atol=1e-7)
        np.testing.assert_allclose(atoms.get_potential_energies(), r["energies"], atol=1e-7)
        if "stress" in r:
            np.testing.assert_allclose(atoms.get_stress(), r["stress"], atol=1e-8)
        # the input's info and arrays are kept, its labels renamed ref_*
        assert atoms.info["config_type"] == orig.info["config_type"]
        np.testing.assert_array_equal(atoms.arrays["tag_array"], orig.arrays["tag_array"])
        assert atoms.info["ref_energy"] == pytest.approx(orig.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(atoms.arrays["ref_forces"], orig.get_forces(), atol=1e-7)

    # evaluating the output again compares with the ref_* labels, not with the earlier predictions
    res = evaluate_structures(read_structures(out), calc, progress=False)
    assert res.metrics["energy_rmse_mev_per_atom"] == pytest.approx(1.0, abs=1e-5)
    assert res.metrics["stress_n"] == 1


def test_cli_eval_without_labels_and_index(model_file, tmp_path, capsys):
    src = tmp_path / "plain.xyz"
    ase.io.write(src, structures(), format="extxyz")
    assert main(["eval", str(src), str(src), "--model", str(model_file), "--index", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "read 2 structures (20 atoms)" in text
    assert "no reference labels" in text
    assert text.count("    10 ") == 2  # the per-structure table: two 10-atom periodic cells


def test_cli_eval_missing_file(model_file, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "none.xyz"), "--model", str(model_file)]) == 1
    err = capsys.readouterr().err
    assert "cace-calc eval: error:" in err and "none.xyz' does not exist" in err


def test_cli_eval_unknown_element(model_file, tmp_path, capsys):
    src = tmp_path / "nacl.xyz"
    ase.io.write(src, [water_cluster(), Atoms("HCl", positions=[[0, 0, 0], [1.3, 0, 0]])], format="extxyz")
    assert main(["eval", str(src), "--model", str(model_file), "-o", str(tmp_path / "out.xyz")]) == 1
    err = capsys.readouterr().err
    assert "structure 1 contains Cl" in err and "it knows H, C, O" in err
    assert not (tmp_path / "out.xyz").exists()
    with pytest.raises(UnsupportedElementError, match="contains Cl"):
        evaluate_structures(read_structures(src), model_file, progress=False)


def test_bad_inputs(model_file, tmp_path):
    with pytest.raises(ValueError, match="no structures"):
        evaluate_structures([], model_file)
    bad = tmp_path / "bad.xyz"
    bad.write_text("this is not\na structure file\n")
    with pytest.raises(ValueError, match="cannot read"):
        read_structures(bad)
    atoms = water_cluster()
    atoms.calc = SinglePointCalculator(atoms, forces=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="structure 0: reference forces have shape"):
        evaluate_structures([atoms], model_file, progress=False)


@pytest.fixture(scope="module")
def heads_file(tmp_path_factory):
    return save_model(make_model(("bchi",), n_heads=4, elements=(1, 6, 8), seed=4),
                      tmp_path_factory.mktemp("heads") / "heads.pt")


def test_uncertainty_in_the_output_and_its_calibration_metrics(heads_file):
    images = structures()
    calc = CACECalculator(heads_file, uncertainty="members")
    res = evaluate_structures(labelled(images, calc), heads_file, uncertainty=True)
    for atoms, ref in zip(res.images, calc.calculate_batch(images)):
        assert atoms.info["energy_uncertainty"] == pytest.approx(ref["energy_uncertainty"])
        np.testing.assert_allclose(atoms.arrays["forces_uncertainty"], ref["forces_uncertainty"])
    u = res.metrics["uncertainty"]
    assert 0 <= u["forces"]["coverage_1sigma"] <= u["forces"]["coverage_2sigma"] <= 1
    assert "within 2 sigma" in res.table()
    with pytest.raises(ValueError, match="carries no uncertainty"):
        evaluate_structures(images, make_model(), uncertainty=True)


def test_select_takes_the_most_uncertain_and_skips_near_copies():
    from cace_calc.evaluate import select_uncertain

    base = periodic_cell()
    frames = []
    for k, (shift, sigma) in enumerate([(0.0, 0.5), (0.01, 0.9), (0.5, 0.3), (1.0, 0.7), (1.5, 0.1)]):
        a = base.copy()
        a.positions[:] += np.random.default_rng(k).normal(scale=shift, size=a.positions.shape)
        a.arrays["forces_uncertainty"] = np.full(len(a), 0.01)
        a.arrays["forces_uncertainty"][k % len(a)] = sigma
        frames.append(a)
    # frame 1 is the most uncertain; frame 0 sits 0.01 A from it (a near copy): skipped
    assert select_uncertain(frames, 3) == [1, 3, 2]
    assert select_uncertain(frames, 10) == [1, 3, 2, 4]
    with pytest.raises(ValueError, match="no forces_uncertainty"):
        select_uncertain([base], 1)


def test_cli_eval_select(heads_file, tmp_path, capsys):
    src = tmp_path / "frames.xyz"
    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        a = periodic_cell()
        a.positions += rng.normal(scale=0.3, size=a.positions.shape)
        frames.append(a)
    ase.io.write(src, frames)
    out = tmp_path / "chosen.xyz"
    assert main(["eval", str(src), "--model", str(heads_file), "--select", "2", "-o", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "the 2 most uncertain, mutually different structures (of 6)" in text
    chosen = ase.io.read(out, ":")
    assert len(chosen) == 2
    sig = [a.arrays["forces_uncertainty"].max() for a in chosen]
    assert sig[0] >= sig[1]
    assert main(["eval", str(src), "--model", str(heads_file), "--select", "2"]) == 1
    assert "give -o" in capsys.readouterr().err
