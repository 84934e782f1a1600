"""The edge sums in per-receiver slots: their hand-written backward pass (checked against finite
differences, twice), tiles and the recomputation used for large systems that give the same
numbers as one pass, edges in any order, and the compiled fast path."""

import pytest
import torch
from conftest import make_model, periodic_cell, water_cluster

import cace_calc.model as model_module
from cace_calc.graph import build_graph
from cace_calc.nn.edge_sums import ReceiverSlots, edge_sums


@pytest.fixture(scope="module", params=[("bchi",), ("bchi", "memory"), ("bchi", "ar", "memory")],
                ids=["bchi", "bchi-memory", "all-messages"])
def tile_model(request):
    return make_model(request.param, n_layers=2)


@pytest.fixture(scope="module")
def graph(tile_model):
    return build_graph([periodic_cell().repeat((2, 2, 1)), water_cluster(), periodic_cell()],
                       tile_model.config.elements, tile_model.cutoff)


def assert_same(out, ref, rtol=1e-12):
    assert set(out) == set(ref)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=rtol, atol=1e-12, msg=k)


def random_edge_sums_inputs(n_weights_l: int, n_tiles: int = 3, seed: int = 0):
    """Random float64 inputs of edge_sums: 7 receivers with K = 4 slots, l_max = 2 (V = 10)."""
    g = torch.Generator().manual_seed(seed)
    n_all, n, k, n_rbf, n_c = 9, 7, 4, 3, 2
    l_blocks = [(0, 1), (1, 4), (4, 10)]
    weights = torch.randn(n_all, n_weights_l, n_c, generator=g, dtype=torch.float64, requires_grad=True)
    senders = torch.randint(0, n_all, (n * k,), generator=g)
    y = torch.randn(n, 10, k, generator=g, dtype=torch.float64, requires_grad=True)
    r = torch.randn(n, n_rbf, k, generator=g, dtype=torch.float64, requires_grad=True)
    return weights, senders, y, r, l_blocks


@pytest.mark.parametrize("n_weights_l", [1, 3], ids=["shared-l", "per-l"])
def test_edge_sums_forward_is_the_definition(n_weights_l):
    weights, senders, y, r, l_blocks = random_edge_sums_inputs(n_weights_l)
    out = edge_sums(weights, senders, list(y.split(3)), list(r.split(3)), l_blocks)
    l_of_v = torch.tensor([0, 1, 1, 1, 2, 2, 2, 2, 2, 2])
    w_slots = weights[senders].view(7, 4, n_weights_l, -1)  # [N, K, L, C]
    w_v = w_slots[:, :, l_of_v if n_weights_l > 1 else torch.zeros(10, dtype=torch.long)]  # [N, K, V, C]
    want = torch.einsum("ivk,ink,ikvc->ivnc", y, r, w_v)
    torch.testing.assert_close(out, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n_weights_l", [1, 3], ids=["shared-l", "per-l"])
def test_edge_sums_backward_twice_against_finite_differences(n_weights_l):
    """gradcheck and gradgradcheck: forces (first derivatives) and training on forces (second)."""
    weights, senders, y, r, l_blocks = random_edge_sums_inputs(n_weights_l)

    def fn(w, y_, r_):
        return edge_sums(w, senders, list(y_.split(3)), list(r_.split(3)), l_blocks)

    assert torch.autograd.gradcheck(fn, (weights, y, r))
    assert torch.autograd.gradgradcheck(fn, (weights, y, r))


def test_receiver_slots_place_every_edge_once():
    receivers = torch.tensor([2, 0, 2, 2, 4, 0, 2])
    slots = ReceiverSlots(receivers, 5)
    assert slots.k == 4
    rows = torch.arange(1.0, 8.0).unsqueeze(1)  # edge e carries e + 1
    out = slots(rows, torch.zeros(1))
    assert out.shape == (5, 4, 1)
    for atom in range(5):
        placed = sorted(v for v in out[atom, :, 0].tolist() if v)
        assert placed == [e + 1.0 for e in range(7) if receivers[e] == atom]
    assert len(set(slots.index.tolist())) == 7


def test_receiver_slots_of_sorted_receivers_keep_the_edge_order():
    # sorted receivers (as neighbour lists give them) take the path without a sort: the same slots
    sorted_receivers = torch.tensor([0, 0, 2, 2, 2, 2, 4])
    assert ReceiverSlots(sorted_receivers, 5).index.tolist() == [0, 1, 8, 9, 10, 11, 16]
    shuffled = torch.tensor([2, 0, 4, 2, 0, 2, 2])  # the same receivers in another order
    assert ReceiverSlots(shuffled, 5).index.tolist() == [8, 0, 16, 9, 1, 10, 11]


@pytest.mark.parametrize("tile", [1, 50, 300])
def test_tiles_give_the_same_numbers_as_one_pass(tile_model, graph, monkeypatch, tile):
    ref = tile_model(graph, stress=True)
    monkeypatch.setattr(model_module, "SLOTS_PER_TILE", tile)
    assert_same(tile_model(graph, stress=True), ref)


def test_edges_in_any_order(tile_model, graph, monkeypatch):
    perm = torch.randperm(len(graph.receivers), generator=torch.Generator().manual_seed(0))
    shuffled = type(graph)(**{**graph.__dict__, "receivers": graph.receivers[perm],
                              "senders": graph.senders[perm], "shifts": graph.shifts[perm]})
    ref = tile_model(graph, stress=True)
    monkeypatch.setattr(model_module, "SLOTS_PER_TILE", 100)
    assert_same(tile_model(shuffled, stress=True), ref)


def count_node_tiles(monkeypatch) -> list[int]:
    """Spy on CACE._layer: the returned list gets the tile size of every call."""
    sizes, layer = [], model_module.CACE._layer

    def spy(self, t, tile, *args):
        sizes.append(tile.n_atoms)
        return layer(self, t, tile, *args)

    monkeypatch.setattr(model_module.CACE, "_layer", spy)
    return sizes


def test_node_tiles_with_recomputation_give_the_same_numbers(tile_model, graph, monkeypatch):
    """Large systems: the per-atom work in node tiles, recomputed in the backward pass (models
    with Ar messages keep one tile)."""
    ref = tile_model(graph, stress=True)
    monkeypatch.setattr(model_module, "RECOMPUTE_ABOVE_ATOMS", 7)
    monkeypatch.setattr(model_module, "SLOTS_PER_TILE", 60)
    monkeypatch.setattr(model_module, "ATOMS_PER_NODE_TILE", 5)
    sizes = count_node_tiles(monkeypatch)
    assert_same(tile_model(graph, stress=True), ref)
    n_atoms, n_passes = len(graph.species), tile_model.config.n_layers + 1
    if "ar" in tile_model.config.messages:
        assert sizes == [n_atoms] * n_passes
    else:
        assert len(sizes) > 6 * n_passes and max(sizes) < n_atoms
        assert sum(sizes) == 2 * n_atoms * n_passes  # forward pass, then recomputed in the backward
    sizes.clear()
    with torch.no_grad():  # energy only: tiles without recomputation
        assert_same(tile_model(graph, forces=False), {k: ref[k] for k in ("energy", "energies")})
    assert sum(sizes) == n_atoms * n_passes


def test_training_gradients_with_tiles_and_recomputation(graph, monkeypatch):
    """Parameter gradients of a force loss (double backward through the edge sums' backward and
    the recomputed node tiles and edge basis) do not depend on tiles and recomputation."""
    model = make_model(("bchi", "memory"), n_layers=2).requires_grad_(True)

    def grads():
        model.zero_grad()
        out = model(graph, training=True)
        (out["forces"] ** 2).sum().backward()
        return {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for k, p in model.named_parameters()}

    ref = grads()
    monkeypatch.setattr(model_module, "SLOTS_PER_TILE", 60)
    monkeypatch.setattr(model_module, "RECOMPUTE_ABOVE_ATOMS", 5)
    monkeypatch.setattr(model_module, "ATOMS_PER_NODE_TILE", 5)
    sizes = count_node_tiles(monkeypatch)
    assert_same(grads(), ref, rtol=1e-10)
    assert max(sizes) < len(graph.species)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.compile internals
def test_compiled_kernels_give_the_same_numbers(monkeypatch):
    """The torch.compile fast path (symmetriser, edge basis, edge sums) agrees with eager to 1e-10
    (float64), in one tile and in recomputed node tiles."""
    from cace_calc import CACECalculator

    model = make_model(("bchi",), n_layers=2)
    graph = build_graph([periodic_cell(), water_cluster()], model.config.elements, model.cutoff)
    ref = model(graph, stress=True)
    calc = CACECalculator(model, device="cpu", compile=True)
    assert calc.model is not model and "_compiled_symmetrizer" not in model.__dict__
    assert_same(calc.model(graph, stress=True), ref, rtol=1e-10)
    assert set(calc.model.state_dict()) == set(model.state_dict())  # model files unchanged
    # 21 atoms, K = 29: edge tiles of 3 atoms, node tiles of 6 and 3 (no size 1: fewer recompiles)
    monkeypatch.setattr(model_module, "RECOMPUTE_ABOVE_ATOMS", 7)
    monkeypatch.setattr(model_module, "SLOTS_PER_TILE", 90)
    monkeypatch.setattr(model_module, "ATOMS_PER_NODE_TILE", 8)
    sizes = count_node_tiles(monkeypatch)
    assert_same(calc.model(graph, stress=True), ref, rtol=1e-10)
    assert sorted(set(sizes)) == [3, 6]
