"""Physics of the CACE model through CACECalculator: derivatives, symmetries, extensivity,
precision, batching and caching."""

import copy

import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from conftest import periodic_cell, random_rotation, slab, water_cluster

from cace_calc import CACECalculator

STRUCTURES = {"cluster": water_cluster, "periodic": periodic_cell, "slab": slab}


@pytest.fixture(params=["model", "bchi_model"])
def any_model(request):
    return request.getfixturevalue(request.param)


def evaluate(atoms, model, **kwargs):
    """A copy of ``atoms`` with a fresh calculator, and its energy, forces and per-atom energies."""
    atoms = atoms.copy()
    atoms.calc = CACECalculator(model, **kwargs)
    return atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_potential_energies()


# --- derivatives ---------------------------------------------------------------------------

def test_forces_are_minus_energy_gradient(structure, any_model):
    atoms = structure
    atoms.calc = CACECalculator(any_model)
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-2  # a real check, not 0 == 0
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(forces, numerical, rtol=0, atol=1e-6)


def test_stress_is_strain_derivative(any_model):
    atoms = periodic_cell()
    atoms.calc = CACECalculator(any_model)
    stress = atoms.get_stress()
    assert stress.shape == (6,)
    assert np.abs(stress).max() > 1e-3
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(stress, numerical, rtol=0, atol=1e-6)


def test_stress_of_sheared_supercell_is_strain_derivative(model):
    atoms = periodic_cell().repeat((1, 2, 1))
    atoms.set_cell(atoms.cell.array @ np.array([[1.02, 0.03, 0.0], [0.0, 0.97, -0.02], [0.01, 0.0, 1.01]]),
                   scale_atoms=True)
    atoms.calc = CACECalculator(model)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["cluster", "slab"])
def test_stress_of_non_periodic_structure_raises(model, name):
    atoms = STRUCTURES[name]()
    atoms.calc = CACECalculator(model)
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()
    e = atoms.get_potential_energy()
    # after a move the refusal leaves no stale results behind
    atoms.positions[1] += [0.03, 0.0, -0.02]
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()
    _, e_moved, f_moved, _ = evaluate(atoms, model)
    assert e_moved != e
    assert atoms.get_potential_energy() == pytest.approx(e_moved, rel=1e-14)
    np.testing.assert_allclose(atoms.get_forces(), f_moved, rtol=0, atol=1e-12)


# --- symmetries ----------------------------------------------------------------------------

@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
@pytest.mark.parametrize("seed", [0, 1])
def test_rotation_invariance(structure, any_model, seed, proper):
    rot = random_rotation(np.random.default_rng(seed), proper=proper)
    _, e, f, eps = evaluate(structure, any_model)
    turned = structure.copy()
    turned.positions = structure.positions @ rot.T
    turned.cell = structure.cell.array @ rot.T  # a zero cell vector stays zero
    turned, e_rot, f_rot, eps_rot = evaluate(turned, any_model)
    assert e_rot == pytest.approx(e, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(eps_rot, eps, rtol=0, atol=1e-10)
    np.testing.assert_allclose(f_rot, f @ rot.T, rtol=0, atol=1e-10)
    if structure.pbc.all():
        s = structure.copy()
        s.calc = CACECalculator(any_model)
        sigma = s.get_stress(voigt=False)
        np.testing.assert_allclose(turned.get_stress(voigt=False), rot @ sigma @ rot.T, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shift", [[0.31, -0.72, 0.05], [13.7, -8.2, 21.9]])
def test_translation_invariance(structure, any_model, shift):
    _, e, f, eps = evaluate(structure, any_model)
    moved = structure.copy()
    moved.translate(shift)
    moved, e_t, f_t, eps_t = evaluate(moved, any_model)
    assert e_t == pytest.approx(e, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(f_t, f, rtol=0, atol=1e-10)
    np.testing.assert_allclose(eps_t, eps, rtol=0, atol=1e-10)
    if structure.pbc.all():
        s = structure.copy()
        s.calc = CACECalculator(any_model)
        np.testing.assert_allclose(moved.get_stress(), s.get_stress(), rtol=0, atol=1e-10)


def test_wrapping_into_the_cell_changes_nothing(any_model):
    atoms = periodic_cell()
    # move every atom by a different whole number of cell vectors, far out of the cell
    lattice_steps = np.random.default_rng(5).integers(-3, 4, size=(len(atoms), 3))
    atoms.positions += lattice_steps @ atoms.cell.array
    atoms, e, f, _ = evaluate(atoms, any_model)
    stress = atoms.get_stress()
    wrapped = atoms.copy()
    wrapped.wrap()
    assert not np.allclose(wrapped.positions, atoms.positions)
    wrapped, e_w, f_w, _ = evaluate(wrapped, any_model)
    assert e_w == pytest.approx(e, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(f_w, f, rtol=0, atol=1e-10)
    np.testing.assert_allclose(wrapped.get_stress(), stress, rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", [3, 4])
def test_permutation_invariance(structure, any_model, seed):
    perm = np.random.default_rng(seed).permutation(len(structure))
    assert (perm != np.arange(len(perm))).any()
    _, e, f, eps = evaluate(structure, any_model)
    shuffled, e_p, f_p, eps_p = evaluate(structure[perm], any_model)
    assert e_p == pytest.approx(e, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(f_p, f[perm], rtol=0, atol=1e-10)
    np.testing.assert_allclose(eps_p, eps[perm], rtol=0, atol=1e-10)
    if structure.pbc.all():
        s = structure.copy()
        s.calc = CACECalculator(any_model)
        np.testing.assert_allclose(shuffled.get_stress(), s.get_stress(), rtol=0, atol=1e-10)


# --- extensivity and per-atom energies -----------------------------------------------------

@pytest.mark.parametrize("reps", [(2, 2, 1), (2, 1, 3)])
def test_supercell_is_extensive(any_model, reps):
    unit, e, f, eps = evaluate(periodic_cell(), any_model)
    stress = unit.get_stress()
    n = int(np.prod(reps))
    big, e_big, f_big, eps_big = evaluate(periodic_cell().repeat(reps), any_model)
    assert e_big == pytest.approx(n * e, rel=1e-11)
    # Atoms.repeat stores the copies one after another
    np.testing.assert_allclose(f_big, np.tile(f, (n, 1)), rtol=0, atol=1e-9)
    np.testing.assert_allclose(eps_big, np.tile(eps, n), rtol=0, atol=1e-9)
    np.testing.assert_allclose(big.get_stress(), stress, rtol=0, atol=1e-10)


def test_per_atom_energies_sum_to_energy(structure, any_model):
    atoms, e, _, eps = evaluate(structure, any_model)
    assert eps.shape == (len(atoms),)
    assert np.ptp(eps) > 1e-3  # atoms really differ
    assert eps.sum() == pytest.approx(e, rel=1e-13, abs=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == e


# --- precision -----------------------------------------------------------------------------

def test_float32_agrees_with_float64(structure, any_model):
    atoms64, e64, f64, eps64 = evaluate(structure, any_model, dtype="float64")
    atoms32, e32, f32, eps32 = evaluate(structure, any_model, dtype="float32")
    assert e32 != e64  # the float32 path really ran in float32
    assert e32 == pytest.approx(e64, rel=1e-6)
    np.testing.assert_allclose(f32, f64, rtol=0, atol=1e-4)
    np.testing.assert_allclose(eps32, eps64, rtol=0, atol=1e-5)
    if structure.pbc.all():
        np.testing.assert_allclose(atoms32.get_stress(), atoms64.get_stress(), rtol=0, atol=1e-5)


def test_float32_calculator_leaves_callers_model_in_float64(model):
    CACECalculator(model, dtype="float32")
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 8 for p in model.parameters())


# --- batching ------------------------------------------------------------------------------

def _check_batch_matches_single(model, images, **kwargs):
    calc = CACECalculator(model)
    batch = calc.calculate_batch(images, **kwargs)
    assert len(batch) == len(images)
    for atoms, res in zip(images, batch):
        single = atoms.copy()
        single.calc = CACECalculator(model)
        assert res["energy"] == pytest.approx(single.get_potential_energy(), rel=1e-12, abs=1e-10)
        assert res["free_energy"] == res["energy"]
        np.testing.assert_allclose(res["forces"], single.get_forces(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(res["energies"], single.get_potential_energies(), rtol=0, atol=1e-10)
        if atoms.pbc.all():
            np.testing.assert_allclose(res["stress"], single.get_stress(), rtol=0, atol=1e-10)
        else:
            assert "stress" not in res


def _periodic_batch():
    big = periodic_cell().repeat((2, 1, 1))
    big.rattle(0.05, seed=6)
    small = periodic_cell()
    small.rattle(0.05, seed=7)
    return [periodic_cell(), big, small]


def _non_periodic_batch():
    moved = water_cluster()
    moved.rattle(0.05, seed=8)
    return [water_cluster(), slab(), moved]


@pytest.mark.parametrize("max_atoms", [20000, 15])
@pytest.mark.parametrize("make", [_periodic_batch, _non_periodic_batch], ids=["periodic", "non_periodic"])
def test_calculate_batch_equals_single_calls(any_model, make, max_atoms):
    _check_batch_matches_single(any_model, make(), max_atoms=max_atoms)


def test_calculate_batch_mixed_periodicity_equals_single_calls(model):
    # regression: the zero volume of the cluster and the slab must not spoil the batch
    _check_batch_matches_single(model, [water_cluster(), periodic_cell(), slab()])


def test_calculate_batch_keeps_cached_results(model):
    atoms = water_cluster()
    atoms.calc = calc = CACECalculator(model)
    e = atoms.get_potential_energy()
    cached = dict(calc.results)
    calc.calculate_batch([slab(), water_cluster()])
    assert calc.results.keys() == cached.keys()
    assert calc.results["energy"] == e
    assert atoms.get_potential_energy() == e


# --- caching -------------------------------------------------------------------------------

@pytest.fixture
def counting_calc(model):
    """A calculator on a private copy of ``model`` whose forward passes are counted."""
    calc = CACECalculator(copy.deepcopy(model))
    calls = []
    forward = calc.model.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    calc.model.forward = counted
    return calc, calls


def test_calculator_caches_results(counting_calc):
    calc, calls = counting_calc
    atoms = periodic_cell()
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert len(calls) == 1
    # everything comes from the one pass
    assert atoms.get_potential_energy() == e
    atoms.get_forces()
    atoms.get_potential_energies()
    atoms.get_stress()
    assert len(calls) == 1
    # an equal copy of the atoms is no change either
    assert calc.get_potential_energy(atoms.copy()) == e
    assert len(calls) == 1

    atoms.positions[2] += [0.01, -0.02, 0.0]
    e_moved = atoms.get_potential_energy()
    assert len(calls) == 2
    assert e_moved != e
    atoms.get_forces()
    assert len(calls) == 2

    atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=False)
    atoms.get_stress()
    assert len(calls) == 3

    atoms.numbers[0] = 1 if atoms.numbers[0] != 1 else 8
    atoms.get_forces()
    assert len(calls) == 4


def test_changed_positions_give_changed_forces(counting_calc):
    calc, calls = counting_calc
    atoms = water_cluster()
    atoms.calc = calc
    f = atoms.get_forces().copy()
    atoms.positions[0] += [0.05, 0.0, 0.0]
    f_new = atoms.get_forces()
    assert len(calls) == 2
    assert not np.allclose(f_new, f)
    # and the new result is the one a fresh calculator gives
    fresh = atoms.copy()
    fresh.calc = CACECalculator(calc.model)
    np.testing.assert_allclose(f_new, fresh.get_forces(), rtol=0, atol=1e-12)
