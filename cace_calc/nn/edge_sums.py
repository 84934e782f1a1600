"""Sums over each atom's edges of node weights times the edge basis, with a hand-written
backward pass, on edges stored in per-receiver slots.

Layout: every receiver has K slots (K = most neighbours of any atom); empty slots hold an edge
beyond the cutoff, whose basis is zero. Per-slot tensors are [N, F, K], the slot axis last, so
that the sum over a receiver's edges is a batched matmul with contiguous operands.

The basis of an edge is the outer product Y[v] R[n] of its angular part Y [N, V, K] and radial
part R [N, n, K]. Only Y and R are kept for the backward pass (V + n numbers per slot); the
[V * n] products are formed tile by tile, in both passes, so no tensor of that size lives longer
than one tile.
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
        order = torch.argsort(receivers, stable=True)
        start = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(receivers)
        rank[order] = torch.arange(n_edges, device=receivers.device) - start[receivers[order]]
        self.index = receivers * self.k + rank

    def __call__(self, rows: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        out = fill.expand(self.n_atoms * self.k, rows.shape[1]).clone()
        out.index_copy_(0, self.index, rows)
        return out.view(self.n_atoms, self.k, rows.shape[1])


def edge_sums(weights: torch.Tensor, senders: torch.Tensor, y: list[torch.Tensor], r: list[torch.Tensor],
              l_blocks: list[tuple[int, int]]) -> torch.Tensor:
    """S[i, v, n, c] = sum over the slots k of receiver i of W[s(i, k), l(v), c] Y[i, v, k] R[i, n, k].

    weights: node weights [N_all, L, C], one per angular order l (L = len(l_blocks)), or
    [N_all, 1, C] for one weight shared by every l. senders: the sender of every slot [N * K]
    (indices into the N_all nodes). y, r: the angular [n_t, V, K] and radial [n_t, n, K] parts
    of consecutive tiles of receivers (together N receivers). l_blocks: [start, stop) of the
    components of each l. Returns [N, V, n, C]. Differentiable twice (training on forces).
    """
    return _EdgeSums.apply(weights, senders, l_blocks, len(y), *y, *r)


def _basis(y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Y [t, V, K] and R [t, n, K] -> Y[v] R[n] [t, V * n, K]."""
    return (y.unsqueeze(2) * r.unsqueeze(1)).flatten(1, 2)


def _radial_weights(r: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """R [t, n, K] and slot weights W [t, K, C] -> R[n] W[c] [t, K, n, C]."""
    return r.transpose(1, 2).unsqueeze(3) * w.unsqueeze(2)


class _EdgeSums(torch.autograd.Function):
    """Two orders of the same contraction, chosen by the weights' shape:

    - one weight for every l (layer 0: the sender's element embedding): form R[n] W[c] per slot
      ([K, n * C], small) and take one matmul with Y;
    - one weight per l (Bchi messages): form the basis Y[v] R[n] of each l and take a matmul with
      that l's weights.
    """

    @staticmethod
    def forward(ctx, weights, senders, l_blocks, n_tiles, *tiles):
        y, r = tiles[:n_tiles], tiles[n_tiles:]
        ctx.save_for_backward(weights, senders, *tiles)
        ctx.l_blocks, ctx.n_tiles = l_blocks, n_tiles
        n_rbf, k = r[0].shape[1], r[0].shape[2]
        per_l = [weights[:, l].contiguous() for l in range(weights.shape[1])]  # [N_all, C] each
        out, slot = [], 0
        for y_t, r_t in zip(y, r):
            n_t = y_t.shape[0]
            s_t = senders[slot:slot + n_t * k]
            slot += n_t * k
            w_t = [w.index_select(0, s_t).view(n_t, k, -1) for w in per_l]  # [n_t, K, C] each
            if len(per_l) == 1:
                sums = torch.bmm(y_t, _radial_weights(r_t, w_t[0]).flatten(2))  # [n_t, V, n * C]
            else:
                sums = torch.cat([torch.bmm(_basis(y_t[:, v0:v1], r_t), w)
                                  for w, (v0, v1) in zip(w_t, l_blocks)], dim=1)  # [n_t, V * n, C]
            out.append(sums.view(n_t, y_t.shape[1], n_rbf, -1))
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad_out):
        weights, senders, *tiles = ctx.saved_tensors
        n_tiles, l_blocks = ctx.n_tiles, ctx.l_blocks
        y, r = tiles[:n_tiles], tiles[n_tiles:]
        need_w = ctx.needs_input_grad[0]
        n_l, n_c = weights.shape[1], weights.shape[2]
        per_l = [weights[:, l].contiguous() for l in range(n_l)]
        grad_w = [torch.zeros_like(w) for w in per_l] if need_w else None
        n_rbf, k = r[0].shape[1], r[0].shape[2]
        grad_y, grad_r = [], []
        grad_out = grad_out.contiguous()  # [N, V, n, C]
        a0 = slot = 0
        for y_t, r_t in zip(y, r):
            n_t = y_t.shape[0]
            s_t = senders[slot:slot + n_t * k]
            g_t = grad_out[a0:a0 + n_t]
            a0, slot = a0 + n_t, slot + n_t * k
            w_t = [w.index_select(0, s_t).view(n_t, k, n_c) for w in per_l]
            if n_l == 1:
                g_t = g_t.view(n_t, -1, n_rbf * n_c)  # [n_t, V, n * C]
                rw = _radial_weights(r_t, w_t[0])  # [n_t, K, n, C]
                grad_y.append(torch.bmm(g_t, rw.flatten(2).transpose(1, 2)))
                g_rw = torch.bmm(y_t.transpose(1, 2), g_t).view(n_t, k, n_rbf, n_c)
                grad_r.append((g_rw * w_t[0].unsqueeze(2)).sum(3).transpose(1, 2))
                if need_w:
                    grad_w[0].index_add_(0, s_t, (g_rw * r_t.transpose(1, 2).unsqueeze(3)).sum(2).view(-1, n_c))
                continue
            g_t = g_t.view(n_t, -1, n_c)  # [n_t, V * n, C]
            gy, gr = [], 0
            for l, (v0, v1) in enumerate(l_blocks):
                g_l = g_t[:, v0 * n_rbf:v1 * n_rbf]  # [n_t, V_l * n, C]
                y_l = y_t[:, v0:v1]
                if need_w:
                    grad_w[l].index_add_(0, s_t, torch.bmm(_basis(y_l, r_t).transpose(1, 2), g_l).view(-1, n_c))
                g_basis = torch.bmm(g_l, w_t[l].transpose(1, 2)).view(n_t, v1 - v0, n_rbf, k)
                gy.append((g_basis * r_t.unsqueeze(1)).sum(2))
                gr = gr + (g_basis * y_l.unsqueeze(2)).sum(1)
            grad_y.append(torch.cat(gy, dim=1))
            grad_r.append(gr)
        gw = torch.stack(grad_w, dim=1) if need_w else None
        return gw, None, None, None, *grad_y, *grad_r
