"""Edges processed in chunks of receivers (bounded memory for large systems) give the same
energies, forces and stress as one pass, including the training path and unsorted edges."""

import itertools

import pytest
import torch
from conftest import make_model, periodic_cell, water_cluster

from cace_calc.graph import build_graph
from cace_calc.model import _edge_chunks


@pytest.fixture(scope="module", params=[("bchi",), ("bchi", "ar", "memory")], ids=["bchi", "all-messages"])
def chunk_model(request):
    return make_model(request.param, n_layers=2)


@pytest.fixture(scope="module")
def graph(chunk_model):
    return build_graph([periodic_cell().repeat((2, 2, 1)), water_cluster(), periodic_cell()],
                       chunk_model.config.elements, chunk_model.cutoff)


def run_with_chunks(model, graph, max_edges, **kw):
    old = model.max_edges_per_chunk
    model.max_edges_per_chunk = max_edges
    try:
        return model(graph, stress=True, **kw)
    finally:
        model.max_edges_per_chunk = old


@pytest.mark.parametrize("max_edges", [40, 333, 1000])
def test_chunked_equals_one_pass(chunk_model, graph, max_edges):
    assert len(_edge_chunks(graph.receivers, len(graph.species), max_edges)) > 1
    ref = chunk_model(graph, stress=True)
    out = run_with_chunks(chunk_model, graph, max_edges)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-12, atol=1e-12, msg=k)


def test_chunked_with_unsorted_edges(chunk_model, graph):
    perm = torch.randperm(len(graph.receivers), generator=torch.Generator().manual_seed(0))
    shuffled = type(graph)(**{**graph.__dict__, "receivers": graph.receivers[perm],
                              "senders": graph.senders[perm], "shifts": graph.shifts[perm]})
    ref = chunk_model(graph, stress=True)
    out = run_with_chunks(chunk_model, shuffled, 200)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-12, atol=1e-12, msg=k)


def test_chunked_training_gradients(graph):
    """Parameter gradients of a force loss (double backward through checkpointed chunks)."""
    model = make_model(("bchi",), n_layers=1).requires_grad_(True)

    def grads(max_edges):
        model.zero_grad()
        out = run_with_chunks(model, graph, max_edges, training=True)
        (out["forces"] ** 2).sum().backward()
        return {k: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for k, p in model.named_parameters()}

    ref, chunked = grads(1 << 20), grads(150)
    for k in ref:
        torch.testing.assert_close(chunked[k], ref[k], rtol=1e-10, atol=1e-12, msg=k)


def test_edge_chunks_cover_every_edge_once():
    receivers = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 2, 4, 4])
    chunks = _edge_chunks(receivers, 5, 4)
    assert chunks[0][0] == 0 and chunks[-1][1] == 5 and chunks[-1][3] == 11
    for (a0, a1, e0, e1), nxt in zip(chunks, chunks[1:] + [None]):
        assert (receivers[e0:e1] >= a0).all() and (receivers[e0:e1] < a1).all()
        assert e1 - e0 <= 4 or a1 - a0 == 1  # an atom with more edges than the limit is alone
        if nxt:
            assert nxt[0] == a1 and nxt[2] == e1


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.compile internals
def test_compiled_kernels_give_the_same_numbers():
    """The torch.compile fast path of the symmetriser agrees with eager to 1e-10 (float64)."""
    from cace_calc import CACECalculator

    model = make_model(("bchi",), n_layers=2)
    graph = build_graph([periodic_cell(), water_cluster()], model.config.elements, model.cutoff)
    ref = model(graph, stress=True)
    calc = CACECalculator(model, device="cpu", compile=True)
    assert calc.model is not model and "_compiled_symmetrizer" not in model.__dict__
    out = calc.model(graph, stress=True)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-10, atol=1e-12, msg=k)
    assert set(calc.model.state_dict()) == set(model.state_dict())  # model files unchanged


@pytest.mark.parametrize("tile", [50, 300])
def test_tiles_within_a_chunk_equal_one_tile(chunk_model, graph, monkeypatch, tile):
    """Receivers split into tiles (small tensors; no recomputation) give the same numbers, alone
    and inside checkpointed chunks."""
    import cace_calc.model as model_module

    ref = chunk_model(graph, stress=True)
    ref_chunked = run_with_chunks(chunk_model, graph, 333)
    monkeypatch.setattr(model_module, "EDGES_PER_TILE", tile)
    assert len(_edge_chunks(graph.receivers, len(graph.species), tile)) > 2
    for out, want in ((chunk_model(graph, stress=True), ref), (run_with_chunks(chunk_model, graph, 333), ref_chunked)):
        for k in want:
            torch.testing.assert_close(out[k], want[k], rtol=1e-12, atol=1e-12, msg=k)


def test_edge_chunks_cover_every_atom_and_edge_once(graph):
    n_atoms = len(graph.species)
    for max_edges in (1, 37, 500, 10**6):
        chunks = _edge_chunks(graph.receivers, n_atoms, max_edges)
        assert chunks[0][0] == 0 and chunks[0][2] == 0
        assert chunks[-1][1] == n_atoms and chunks[-1][3] == len(graph.receivers)
        for (a0, a1, e0, e1), (b0, _, f0, _) in itertools.pairwise(chunks):
            assert a1 == b0 and e1 == f0 and a1 > a0
        degree = torch.bincount(graph.receivers, minlength=n_atoms)
        for a0, a1, e0, e1 in chunks:
            assert e1 - e0 == int(degree[a0:a1].sum())
            assert e1 - e0 <= max_edges + int(degree[a0:a1].max())
