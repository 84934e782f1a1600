"""Neighbour list and batching of cace_calc.graph, checked against ASE's neighbour list."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.data import chemical_symbols
from ase.neighborlist import neighbor_list as ase_neighbor_list
from conftest import periodic_cell, random_rotation, slab, water_cluster

from cace_calc.errors import InvalidAtomsError, UnsupportedElementError
from cace_calc.graph import NeighbourCache, build_graph, check_atoms, neighbour_list, neighbour_pairs, species_indices

CUTOFF = 4.0


def copper_primitive() -> Atoms:
    """One-atom fcc cell, every cell vector (2.55 A) shorter than the cutoff."""
    return bulk("Cu", "fcc", a=3.6)


def skewed_cell() -> Atoms:
    """A strongly sheared triclinic cell, thinner than the cutoff in every direction."""
    cell = [[3.0, 0.0, 0.0], [2.9, 0.5, 0.0], [0.1, 0.2, 2.5]]
    return Atoms("CO", positions=[[0.0, 0.0, 0.0], [1.0, 0.7, 0.4]], cell=cell, pbc=True)


def slab_with_short_z() -> Atoms:
    """The slab with a short (2 A) but non-periodic third cell vector: no images along z."""
    atoms = slab()
    atoms.cell[2] = [0.0, 0.0, 2.0]
    return atoms


def molecule_in_box() -> Atoms:
    """An isolated molecule that carries a small cell but no periodicity."""
    atoms = water_cluster()
    atoms.cell = [2.0, 2.0, 2.0]
    atoms.pbc = False
    return atoms


SYSTEMS = {
    "cu_primitive": copper_primitive,
    "skewed": skewed_cell,
    "triclinic": periodic_cell,
    "slab": slab,
    "slab_short_z": slab_with_short_z,
    "molecule": water_cluster,
    "molecule_in_box": molecule_in_box,
}


def rotated(atoms: Atoms, seed: int) -> Atoms:
    """A copy with positions and cell rotated together by a random rotation (row vectors)."""
    rot = random_rotation(np.random.default_rng(seed))
    out = atoms.copy()
    out.positions = atoms.positions @ rot.T
    out.cell = atoms.cell.array @ rot.T
    return out


def integer_shifts(atoms: Atoms, shifts: np.ndarray) -> np.ndarray:
    """Cartesian shifts back to integer cell multiples S (shift = S @ cell)."""
    cell = atoms.cell.array
    s = np.rint(shifts @ np.linalg.pinv(cell)).astype(int)
    np.testing.assert_allclose(s @ cell, shifts, atol=1e-9)
    # no image along a non-periodic direction
    assert (s[:, ~atoms.pbc] == 0).all()
    return s


def graph_edges(atoms: Atoms, cutoff: float) -> set:
    r, s, sh = neighbour_list(atoms, cutoff)
    ints = integer_shifts(atoms, sh)
    edges = {(int(a), int(b), tuple(int(x) for x in c)) for a, b, c in zip(r, s, ints)}
    assert len(edges) == len(r), "duplicate edges in the neighbour list"
    return edges


def ase_edges(atoms: Atoms, cutoff: float) -> set:
    i, j, shift = ase_neighbor_list("ijS", atoms, cutoff)
    # ASE's distance vector is x_j - x_i + S @ cell: j is the receiver, i the sender
    return {(int(b), int(a), tuple(int(x) for x in c)) for a, b, c in zip(i, j, shift)}


@pytest.mark.parametrize("name", SYSTEMS)
@pytest.mark.parametrize("seed", [None, 11, 12])
def test_neighbour_list_matches_ase(name, seed):
    atoms = SYSTEMS[name]()
    if seed is not None:
        atoms = rotated(atoms, seed)
    ours = graph_edges(atoms, CUTOFF)
    ref = ase_edges(atoms, CUTOFF)
    assert len(ref) > 0
    assert ours == ref


@pytest.mark.parametrize("name", SYSTEMS)
def test_edge_vectors_within_cutoff_and_match_ase(name):
    atoms = SYSTEMS[name]()
    r, s, sh = neighbour_list(atoms, CUTOFF)
    vec = atoms.positions[r] - atoms.positions[s] + sh
    dist = np.linalg.norm(vec, axis=1)
    assert (dist < CUTOFF).all()
    assert (dist > 0.5).all()
    # same multiset of edge vectors as ASE's D (sorted lexicographically)
    d_ref = ase_neighbor_list("D", atoms, CUTOFF)
    assert vec.shape == d_ref.shape
    np.testing.assert_allclose(vec[np.lexsort(vec.T)], d_ref[np.lexsort(d_ref.T)], atol=1e-10)


def test_cell_smaller_than_cutoff_sees_its_own_images():
    atoms = copper_primitive()
    r, s, sh = neighbour_list(atoms, CUTOFF)
    # 12 nearest (a/sqrt(2)) plus 6 second neighbours (a), all images of the one atom
    assert len(r) == 18
    assert (r == 0).all() and (s == 0).all()
    dist = np.sort(np.linalg.norm(sh, axis=1))
    np.testing.assert_allclose(dist[:12], 3.6 / np.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(dist[12:], 3.6, rtol=1e-12)


@pytest.mark.parametrize("name", SYSTEMS)
def test_no_self_edges_and_full_list(name):
    atoms = SYSTEMS[name]()
    edges = graph_edges(atoms, CUTOFF)
    for r, s, shift in edges:
        assert not (r == s and shift == (0, 0, 0)), "self-edge with zero shift"
    reverse = {(s, r, tuple(-x for x in shift)) for r, s, shift in edges}
    assert reverse == edges


def test_isolated_molecule_has_no_shifts():
    atoms = water_cluster()
    r, s, sh = neighbour_list(atoms, CUTOFF)
    assert len(r) > 0
    assert (sh == 0).all()
    n = len(atoms)
    dist = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1)
    expected = {(a, b) for a in range(n) for b in range(n) if a != b and dist[a, b] < CUTOFF}
    assert set(zip(r.tolist(), s.tolist())) == expected


def test_build_graph_batches_two_structures():
    first, second = periodic_cell(), water_cluster()
    elements = [1, 6, 8]
    graph = build_graph([first, second], elements, CUTOFF)
    n1, n2 = len(first), len(second)

    assert graph.n_graphs == 2
    assert graph.positions.dtype == torch.float64 and graph.shifts.dtype == torch.float64
    np.testing.assert_array_equal(graph.positions.numpy(), np.concatenate([first.positions, second.positions]))
    np.testing.assert_array_equal(graph.batch.numpy(), [0] * n1 + [1] * n2)
    expected_species = [elements.index(z) for z in np.concatenate([first.numbers, second.numbers])]
    np.testing.assert_array_equal(graph.species.numpy(), expected_species)
    np.testing.assert_array_equal(graph.cell.numpy(), np.stack([first.cell.array, second.cell.array]))
    np.testing.assert_array_equal(graph.pbc.numpy(), [[True] * 3, [False] * 3])

    r1, s1, sh1 = neighbour_list(first, CUTOFF)
    r2, s2, sh2 = neighbour_list(second, CUTOFF)
    np.testing.assert_array_equal(graph.receivers.numpy(), np.concatenate([r1, r2 + n1]))
    np.testing.assert_array_equal(graph.senders.numpy(), np.concatenate([s1, s2 + n1]))
    np.testing.assert_array_equal(graph.shifts.numpy(), np.concatenate([sh1, sh2]))

    # no edge crosses structures
    assert (graph.batch[graph.receivers] == graph.batch[graph.senders]).all()
    # the edge vectors of the batch are those of each structure alone
    vec = graph.positions[graph.receivers] - graph.positions[graph.senders] + graph.shifts
    ref = [build_graph([a], elements, CUTOFF) for a in (first, second)]
    ref_vec = torch.cat([g.positions[g.receivers] - g.positions[g.senders] + g.shifts for g in ref])
    torch.testing.assert_close(vec, ref_vec, rtol=0, atol=1e-12)


def test_build_graph_to_changes_float_dtype_only():
    graph = build_graph([slab()], [1, 6, 8], CUTOFF).to(dtype=torch.float32)
    assert graph.positions.dtype == torch.float32
    assert graph.shifts.dtype == torch.float32
    assert graph.cell.dtype == torch.float32
    assert graph.receivers.dtype == torch.int64
    assert graph.species.dtype == torch.int64
    assert graph.pbc.dtype == torch.bool


def test_build_graph_rejects_empty_list():
    with pytest.raises(ValueError, match="empty"):
        build_graph([], [1, 6, 8], CUTOFF)


def test_species_indices_maps_to_element_order():
    idx = species_indices(np.array([8, 1, 1, 6, 8]), [6, 8, 1])
    np.testing.assert_array_equal(idx, [1, 2, 2, 0, 1])


@pytest.mark.parametrize("numbers", [[1, 26, 8], [1, 2, 8], [92]])
def test_species_indices_unknown_element(numbers):
    with pytest.raises(UnsupportedElementError) as err:
        species_indices(np.array(numbers), [1, 6, 8])
    msg = str(err.value)
    assert "H, C, O" in msg
    for z in set(numbers) - {1, 6, 8}:
        assert chemical_symbols[z] in msg


def test_build_graph_unknown_element():
    atoms = water_cluster()
    atoms.numbers[0] = 14
    with pytest.raises(UnsupportedElementError, match="Si"):
        build_graph([atoms], [1, 6, 8], CUTOFF)


def test_check_atoms_accepts_the_test_structures():
    for make in SYSTEMS.values():
        check_atoms(make())


def _nan_positions():
    atoms = water_cluster()
    atoms.positions[3, 1] = np.nan
    return atoms


def _inf_cell():
    atoms = periodic_cell()
    atoms.cell[0, 0] = np.inf
    return atoms


def _zero_periodic_vector():
    atoms = slab()
    atoms.pbc = True
    return atoms


def _flat_cell():
    atoms = periodic_cell()
    atoms.cell[2] = atoms.cell[0] + atoms.cell[1]
    return atoms


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Atoms(), "empty"),
        (_nan_positions, r"non-finite.*\[3\]"),
        (_inf_cell, "non-finite"),
        (_zero_periodic_vector, r"zero cell vector"),
        (_flat_cell, "zero volume"),
    ],
    ids=["empty", "nan_positions", "inf_cell", "zero_periodic_vector", "flat_cell"],
)
def test_check_atoms_rejects_bad_structures(make, match):
    with pytest.raises(InvalidAtomsError, match=match):
        check_atoms(make())


def test_check_atoms_rejects_non_atoms():
    with pytest.raises(TypeError, match="ase.Atoms"):
        check_atoms(np.zeros((3, 3)))


@pytest.mark.parametrize("name", SYSTEMS)
def test_pairs_sorted_by_receiver_then_sender(name):
    atoms = SYSTEMS[name]()
    r, s, _ = neighbour_list(atoms, CUTOFF)
    key = r * len(atoms) + s
    assert (np.diff(key) >= 0).all()


def test_build_graph_on_a_device_keeps_everything_there():
    graph = build_graph([slab(), water_cluster()], [1, 6, 8], CUTOFF, device="cpu")
    tensors = [getattr(graph, f) for f in ("positions", "species", "receivers", "senders", "shifts", "cell",
                                           "pbc", "batch")]
    assert all(t.device.type == "cpu" for t in tensors)
    assert graph.positions.dtype == torch.float64 and graph.receivers.dtype == torch.long


def _tensors(atoms):
    return (torch.from_numpy(atoms.positions.astype(np.float64)), torch.from_numpy(atoms.cell.array.astype(np.float64)),
            atoms.pbc, atoms.numbers)


@pytest.mark.parametrize("name", SYSTEMS)
def test_verlet_list_gives_the_fresh_lists_edges_in_order(name):
    """Small moves within half the skin: the cached list's edges are the fresh list's, in the
    same order, built once; a larger move, a changed cell or changed atoms rebuild it."""
    atoms = SYSTEMS[name]()
    cache = NeighbourCache(CUTOFF, skin=0.6)
    rng = np.random.default_rng(3)
    start = atoms.positions.copy()
    for k in range(6):  # built at the start, then moved up to 0.29 A from there
        atoms.positions = start + (rng.uniform(-0.17, 0.17, start.shape) if k else 0.0)
        x, cell, pbc, numbers = _tensors(atoms)
        for got, ref in zip(cache.pairs(x, cell, pbc, numbers), neighbour_pairs(x, cell, pbc, CUTOFF)):
            assert torch.equal(got, ref)
    assert cache.builds == 1
    atoms.positions = start.copy()
    atoms.positions[0] += [0.31, 0.0, 0.0]  # 0.31 A from where it was built
    cache.pairs(*_tensors(atoms))
    assert cache.builds == 2
    if atoms.pbc.any():
        atoms.set_cell(atoms.cell.array * 1.001, scale_atoms=False)
        cache.pairs(*_tensors(atoms))
        assert cache.builds == 3
    atoms.numbers[0] = 1 if atoms.numbers[0] != 1 else 8
    cache.pairs(*_tensors(atoms))
    assert cache.builds == 3 + bool(atoms.pbc.any())


def test_calculator_keeps_its_list_and_its_numbers(tmp_path):
    """An MD-like walk with one calculator gives exactly what a fresh calculator gives at each
    step (float64), with fewer neighbour-list builds than steps."""
    from conftest import make_model

    from cace_calc import CACECalculator

    model = make_model(("bchi", "ar"), n_layers=1, elements=(1, 6, 8), cutoff=3.0, seed=1)
    atoms = periodic_cell()
    calc = CACECalculator(model, device="cpu", dtype="float64")
    rng = np.random.default_rng(0)
    for step in range(8):
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        atoms.calc = calc
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        fresh = atoms.copy()
        fresh.calc = CACECalculator(model, device="cpu", dtype="float64")
        assert e == fresh.get_potential_energy()
        assert np.array_equal(f, fresh.get_forces()) and np.array_equal(s, fresh.get_stress())
    assert calc.neighbours.builds < 8
