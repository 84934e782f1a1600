"""Sums over each atom's edges of node weights times the edge basis, with a hand-written
backward pass, on edges stored in per-receiver slots.

Layout: every receiver has K slots (K = most neighbours of any atom); empty slots hold an edge
beyond the cutoff, whose basis is zero. Per-slot tensors are [N, F, K], the slot axis last, so
that the sum over a receiver's edges is a batched matmul with contiguous operands.

The basis of an edge is the outer product Y[v] R[n] of its angular part Y [N, V, K] and radial
part R [N, n, K]. Only Y and R are kept for the backward pass (V + n numbers per slot); products
of them ([K, n * C] or, in the backward pass of per-l weights, [V * n, K]) are formed tile by
tile, so no tensor of that size lives longer than one tile.
"""

from __future__ import annotations

import torch


class ReceiverSlots:
    """Places per-edge rows [E, F] into per-receiver slots [N, K, F] filled with ``fill``.

    Edge e goes to slot ``rank(e)`` of receiver ``receivers[e]``, where rank counts the earlier
    edges of the same receiver; K is the largest number of edges of any receiver (at least 1).
    Receivers need not be sorted.
    """

    def __init__(self, receivers: torch.Tensor, n_atoms: int):
        n_edges = receivers.shape[0]
        counts = torch.bincount(receivers, minlength=n_atoms)
        self.k = max(int(counts.max()), 1) if n_edges else 1
        self.n_atoms = n_atoms
        start = torch.cumsum(counts, 0) - counts
        position = torch.arange(n_edges, device=receivers.device)
        if n_edges < 2 or bool((receivers[1:] >= receivers[:-1]).all()):  # neighbour lists come sorted
            rank = position - start[receivers]
        else:
            order = torch.argsort(receivers, stable=True)
            rank = torch.empty_like(receivers)
            rank[order] = position - start[receivers[order]]
        self.index = receivers * self.k + rank

    def __call__(self, rows: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        out = fill.expand(self.n_atoms * self.k, rows.shape[1]).clone()
        out.index_copy_(0, self.index, rows)
        return out.view(self.n_atoms, self.k, rows.shape[1])


def edge_sums(weights: torch.Tensor, senders: torch.Tensor, y: list[torch.Tensor], r: list[torch.Tensor],
              l_blocks: list[tuple[int, int]], compiled: bool = False) -> torch.Tensor:
    """S[i, v, n, c] = sum over the slots k of receiver i of W[s(i, k), l(v), c] Y[i, v, k] R[i, n, k].

    weights: node weights [N_all, L, C], one per angular order l (L = len(l_blocks)), or
    [N_all, 1, C] for one weight shared by every l. senders: the sender of every slot [N * K]
    (indices into the N_all nodes). y, r: the angular [n_t, V, K] and radial [n_t, n, K] parts
    of consecutive tiles of receivers (together N receivers). l_blocks: [start, stop) of the
    components of each l. ``compiled``: run the per-tile work as torch.compile kernels (same
    numbers; inference only, not for training). Returns [N, V, n, C]. Differentiable twice
    (training on forces).
    """
    return _EdgeSums.apply(weights, senders, l_blocks, _compiled_kernels() if compiled else _KERNELS,
                           len(y), *y, *r)


def _basis(y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Y [t, V, K] and R [t, n, K] -> Y[v] R[n] [t, V * n, K]."""
    return (y.unsqueeze(2) * r.unsqueeze(1)).flatten(1, 2)


def _radial_weights(r: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """R [t, n, K] and slot weights W [t, K, C] -> R[n] W[c] [t, K, n, C]."""
    return r.transpose(1, 2).unsqueeze(3) * w.unsqueeze(2)


# Per-tile work, in two orders of the same contraction:
# - one weight for every l (layer 0: the sender's element embedding): form R[n] W[c] per slot
#   ([K, n * C], small) and take one matmul with Y;
# - one weight per l (Bchi messages): forward, the same per l on that l's components of Y;
#   backward, form the basis Y[v] R[n] of that l and take a matmul with its weights (the shared
#   form's backward per l took 1.1x as long, compiled).
# Shapes: y [t, V, K], r [t, n, K], slot weights w [t, K, C], output gradient g [t, V, n, C].

def _shared_forward(y, r, w):
    return torch.bmm(y, _radial_weights(r, w).flatten(2)).view(y.shape[0], y.shape[1], r.shape[1], -1)


def _shared_backward(y, r, g, w, need_w: bool):
    """-> (grad of slot weights [t, K, C] or None, grad y, grad r)."""
    g = g.flatten(2)  # [t, V, n * C]
    g_y = torch.bmm(g, _radial_weights(r, w).flatten(2).transpose(1, 2))
    g_rw = torch.bmm(y.transpose(1, 2), g).view(w.shape[0], w.shape[1], r.shape[1], w.shape[2])  # [t, K, n, C]
    g_r = (g_rw * w.unsqueeze(2)).sum(3).transpose(1, 2)
    g_w = (g_rw * r.transpose(1, 2).unsqueeze(3)).sum(2) if need_w else None
    return g_w, g_y, g_r


def _per_l_forward(y, r, ws, l_blocks):
    """ws: slot weights of each l [t, K, C]; l_blocks: [start, stop) of each l's components. Per
    l, the shared form on that l's components of Y (compiled, half the time of a product of the
    basis of that l with its weights, whose inner size is C)."""
    return torch.cat([_shared_forward(y[:, v0:v1].contiguous(), r, w) for w, (v0, v1) in zip(ws, l_blocks)], dim=1)


def _per_l_backward(y, r, g, ws, l_blocks, need_w: bool):
    """-> (grads of the slot weights of each l [t, K, C] or None, grad y, grad r)."""
    g_ws, g_ys, g_r = [], [], 0
    for w, (v0, v1) in zip(ws, l_blocks):
        y_l, g_l = y[:, v0:v1], g[:, v0:v1].flatten(1, 2)  # g_l [t, V_l * n, C]
        g_basis = torch.bmm(g_l, w.transpose(1, 2)).view(y.shape[0], v1 - v0, r.shape[1], -1)  # [t, V_l, n, K]
        g_ys.append((g_basis * r.unsqueeze(1)).sum(2))
        g_r = g_r + (g_basis * y_l.unsqueeze(2)).sum(1)
        if need_w:
            g_ws.append(torch.bmm(_basis(y_l, r).transpose(1, 2), g_l))
    return (g_ws if need_w else None), torch.cat(g_ys, dim=1), g_r


_KERNELS = (_shared_forward, _shared_backward, _per_l_forward, _per_l_backward)
_COMPILED: list = []


def _compiled_kernels() -> tuple:
    if not _COMPILED:
        _COMPILED.append(tuple(torch.compile(f, dynamic=True) for f in _KERNELS))
    return _COMPILED[0]


def _tiles(weights, senders, y, r):
    """Per tile: (first receiver, Y, R, slot senders [n_t * K], slot weights of each l [n_t, K, C])."""
    k = r[0].shape[2]
    per_l = [weights[:, l].contiguous() for l in range(weights.shape[1])]  # [N_all, C] each
    a0 = 0
    for y_t, r_t in zip(y, r):
        n_t = y_t.shape[0]
        s_t = senders[a0 * k:(a0 + n_t) * k]
        yield a0, y_t, r_t, s_t, [w.index_select(0, s_t).view(n_t, k, -1) for w in per_l]
        a0 += n_t


class _EdgeSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights, senders, l_blocks, kernels, n_tiles, *tiles):
        y, r = tiles[:n_tiles], tiles[n_tiles:]
        ctx.save_for_backward(weights, senders, *tiles)
        ctx.l_blocks, ctx.kernels, ctx.n_tiles = l_blocks, kernels, n_tiles
        shared_forward, _, per_l_forward, _ = kernels
        return torch.cat([shared_forward(y_t, r_t, w_t[0]) if len(w_t) == 1 else per_l_forward(y_t, r_t, w_t, l_blocks)
                          for _, y_t, r_t, _, w_t in _tiles(weights, senders, y, r)], dim=0)

    @staticmethod
    def backward(ctx, grad_out):
        weights, senders, *tiles = ctx.saved_tensors
        y, r = tiles[:ctx.n_tiles], tiles[ctx.n_tiles:]
        _, shared_backward, _, per_l_backward = ctx.kernels
        need_w = ctx.needs_input_grad[0]
        n_l, n_c = weights.shape[1], weights.shape[2]
        grad_w = torch.zeros_like(weights, memory_format=torch.contiguous_format) if need_w else None
        grad_y, grad_r = [], []
        grad_out = grad_out.contiguous()  # [N, V, n, C]
        for a0, y_t, r_t, s_t, w_t in _tiles(weights, senders, y, r):
            g_t = grad_out[a0:a0 + y_t.shape[0]]
            if n_l == 1:
                g_w, g_y, g_r = shared_backward(y_t, r_t, g_t, w_t[0], need_w)
                g_w = [g_w]
            else:
                g_w, g_y, g_r = per_l_backward(y_t, r_t, g_t, w_t, ctx.l_blocks, need_w)
            if need_w:  # one scatter of rows [L * C] (short rows scatter slowly)
                grad_w.index_add_(0, s_t, torch.stack(g_w, dim=2).view(-1, n_l, n_c))
            grad_y.append(g_y)
            grad_r.append(g_r)
        return grad_w, None, None, None, None, *grad_y, *grad_r
