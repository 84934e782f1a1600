"""Degenerate, thin and skewed periodic cells: clear errors before any neighbour list, and the
same results however the lattice is written."""

import numpy as np
import pytest
import vesin_torch
from ase import Atoms
from ase.build import molecule
from conftest import make_model, periodic_cell, slab

from cace_calc import CACECalculator
from cace_calc.errors import InvalidAtomsError
from cace_calc.graph import neighbour_list


@pytest.fixture(scope="module")
def calc():
    return CACECalculator(make_model(("bchi", "ar")), device="cpu")


def _water(cell, pbc) -> Atoms:
    atoms = molecule("H2O")
    atoms.cell = cell
    atoms.pbc = pbc
    return atoms


@pytest.mark.parametrize("cell,pbc", [
    ([[10, 0, 0], [20, 0, 0], [0, 0, 10]], [1, 1, 0]),   # collinear periodic vectors (was SIGFPE)
    ([[10, 0, 0], [0, 0, 10], [-30, 0, 0]], [1, 0, 1]),
    ([[10, 0, 0], [0, 10, 0], [10, 10, 0]], [1, 1, 1]),   # coplanar
])
def test_linearly_dependent_periodic_vectors_are_refused(calc, cell, pbc):
    atoms = _water(cell, pbc)
    atoms.calc = calc
    with pytest.raises(InvalidAtomsError, match="linearly dependent|zero volume"):
        atoms.get_potential_energy()


def test_non_periodic_vectors_may_be_degenerate(calc):
    # only periodic directions need a proper lattice: a slab with a collinear non-periodic vector
    ref = _water([[10, 0, 0], [0, 10, 0], [0, 0, 0]], [1, 1, 0])
    ref.calc = calc
    atoms = _water([[10, 0, 0], [0, 10, 0], [20, 0, 0]], [1, 1, 0])
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)


@pytest.mark.parametrize("cell,height", [
    ([10, 10, 1e-9], "1e-09"),        # returned E = 110 eV before
    ([10, 10, 1e-7], "1e-07"),        # grew memory without bound before
    ([[10, 0, 0], [0, 10, 0], [10, 10, 0.01]], "0.01"),  # flat and skewed: never finished before
    ([[3, 0, 0], [1e-6, 1e-6, 0], [0, 0, 0]], "1e-06"),  # 2-D periodic, nearly collinear
])
def test_thin_cells_are_refused_before_the_neighbour_list(calc, cell, height, monkeypatch):
    def no_list(*args, **kwargs):
        raise AssertionError("a neighbour list was built")

    monkeypatch.setattr(vesin_torch.NeighborList, "compute", no_list)
    pbc = [1, 1, 0] if len(cell) == 3 and not np.any(cell[2]) else True
    atoms = _water(cell, pbc)
    atoms.calc = calc
    with pytest.raises(InvalidAtomsError, match=rf"height {height} A is too small for the 4 A cutoff"):
        atoms.get_potential_energy()


def test_dense_small_cells_are_still_accepted():
    # a 1-atom cell with every vector shorter than the cutoff is a normal crystal
    atoms = Atoms("C", cell=[[1.2, 0, 0], [0.6, 1.1, 0], [0, 0, 1.3]], pbc=True)
    assert len(neighbour_list(atoms, 4.0)[0]) > 0


def _skew(k: int) -> np.ndarray:
    """Unimodular integer matrix: M @ cell spans the same lattice."""
    return np.array([[1, 0, 0], [k, 1, 0], [k, k, 1]])


def _results(atoms, calc):
    atoms.calc = calc
    stress = atoms.get_stress() if atoms.pbc.all() else np.zeros(6)
    return atoms.get_potential_energy(), atoms.get_forces(), stress, atoms.get_potential_energies()


@pytest.mark.parametrize("k", [20, 40])
def test_skewed_lattice_gives_the_same_results(calc, k, monkeypatch):
    base = periodic_cell()
    skewed = base.copy()
    skewed.cell = _skew(k) @ base.cell.array        # positions unchanged, far outside the cell
    cell_before, pos_before = skewed.cell.array.copy(), skewed.positions.copy()
    e0, f0, s0, ea0 = _results(base.copy(), calc)

    boxes = []
    compute = vesin_torch.NeighborList.compute

    def spy(self, points, box, periodic, quantities, copy=True):
        boxes.append(box.numpy().copy())
        return compute(self, points=points, box=box, periodic=periodic, quantities=quantities, copy=copy)

    monkeypatch.setattr(vesin_torch.NeighborList, "compute", spy)
    e, f, s, ea = _results(skewed, calc)
    # the neighbour list was built with a reduced basis of the same lattice
    assert len(boxes) == 1
    op = np.linalg.solve(base.cell.array.T, boxes[0].T).T
    assert np.allclose(op, np.round(op), atol=1e-8) and abs(abs(np.linalg.det(op)) - 1) < 1e-8
    assert np.prod(np.linalg.norm(boxes[0], axis=1)) < 2 * abs(np.linalg.det(boxes[0]))
    # same numbers, in the user's atom order and frame; the user's atoms untouched
    assert e == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(f, f0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(s, s0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ea, ea0, rtol=0, atol=1e-10)
    assert np.array_equal(skewed.cell.array, cell_before) and np.array_equal(skewed.positions, pos_before)


def test_skewed_slab_gives_the_same_results(calc):
    base = slab()                                    # periodic in x and y only
    skewed = base.copy()
    skewed.cell = _skew(30) @ base.cell.array
    skewed.cell[2] = base.cell[2]                    # the non-periodic vector as given
    e0, f0, _, _ = _results(base.copy(), calc)
    e, f, _, _ = _results(skewed, calc)
    assert e == pytest.approx(e0, abs=1e-10)
    np.testing.assert_allclose(f, f0, rtol=0, atol=1e-10)


def test_absurd_density_is_refused_before_the_neighbour_list(monkeypatch):
    # 20,000 atoms in a 10 A cube (20 atoms/A^3): about 1.7e9 pairs within 10 A
    rng = np.random.default_rng(0)
    atoms = Atoms("H20000", positions=rng.random((20000, 3)) * 10, cell=[10, 10, 10], pbc=True)
    monkeypatch.setattr(vesin_torch.NeighborList, "compute", lambda *a, **k: pytest.fail("list built"))
    with pytest.raises(InvalidAtomsError, match=r"would hold about 1.68e\+09 pairs \(20000 atoms, 20 per A\^3"):
        neighbour_list(atoms, 10.0)


def test_large_cutoff_on_a_normal_cell_is_accepted():
    # e.g. a g(r) to 20 A of a small periodic box: many images, still a sane list
    atoms = periodic_cell()
    r, _, shifts = neighbour_list(atoms, 20.0)
    assert len(r) > 10 * 3000 and np.abs(shifts).max() > 15
