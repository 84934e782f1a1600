"""Rotation-invariant contractions B of the atom-centred density A (nu = 1..4)."""

import itertools

import torch

from .angular import angular_exponents, multinomial


def _add(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def invariant_terms(l_max: int, nu_max: int) -> list[tuple[int, list[tuple[float, tuple[int, ...]]]]]:
    """The symmetrised features as sparse sums, in CACE order (by nu, then by sorted key).

    Returns one entry per feature: (nu, [(weight, (v index, ...)), ...]) where each term is
    weight * prod_k A[v_k]. v indices follow :func:`angular_exponents`.
    """
    if not 1 <= nu_max <= 4:
        raise ValueError(f"nu_max must be between 1 and 4, got {nu_max}")
    exps = angular_exponents(l_max)
    index = {v: i for i, v in enumerate(exps)}
    by_l = {l: [v for v in exps if sum(v) == l] for l in range(l_max + 1)}
    M = multinomial
    features = [(1, [(1.0, (0,))])]
    if nu_max >= 2:
        for L in range(1, l_max + 1):
            features.append((2, [(float(M(v)), (index[v], index[v])) for v in by_l[L]]))
    if nu_max >= 3:
        for l1 in range(1, l_max + 1):
            for l2 in range(l1, l_max + 1 - l1):
                terms = [
                    (float(M(a) * M(b)), (index[a], index[b], index[_add(a, b)]))
                    for a, b in itertools.product(by_l[l1], by_l[l2])
                ]
                features.append((3, terms))
    if nu_max >= 4:
        for l1 in range(1, l_max + 1):
            for l2 in range(l1 + 1, l_max + 1):
                for dl in range(1, l_max + 1 - l2):
                    terms = [
                        (
                            float(M(a) * M(b) * M(d)),
                            (index[a], index[b], index[_add(a, d)], index[_add(b, d)]),
                        )
                        for a, b, d in itertools.product(by_l[l1], by_l[l2], by_l[dl])
                    ]
                    features.append((4, terms))
    return features


class Symmetrizer(torch.nn.Module):
    """B[s, ...] = sum_terms w * prod_k A[v_k, ...], evaluated as gathers and products.

    Input A [V, ...] (angular component first, any trailing shape); output B [n_sym, ...].
    Terms of one body order nu are evaluated together (one gather per factor, one product, one
    index_add along the leading dimension), so the loop runs over nu only.
    """

    def __init__(self, l_max: int, nu_max: int):
        super().__init__()
        features = invariant_terms(l_max, nu_max)
        self.n_sym = len(features)
        self.orders = sorted({nu for nu, _ in features})
        for nu in self.orders:
            rows, weights, idx = [], [], []
            for s, (order, terms) in enumerate(features):
                if order != nu:
                    continue
                for w, vs in terms:
                    rows.append(s)
                    weights.append(w)
                    idx.append(vs)
            self.register_buffer(f"rows_{nu}", torch.tensor(rows), persistent=False)
            self.register_buffer(f"weights_{nu}", torch.tensor(weights, dtype=torch.float64), persistent=False)
            self.register_buffer(f"index_{nu}", torch.tensor(idx).T.contiguous(), persistent=False)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        out = a.new_zeros(self.n_sym, *a.shape[1:])
        for nu in self.orders:
            index = getattr(self, f"index_{nu}")
            prod = a.index_select(0, index[0])
            for k in range(1, nu):
                prod = prod * a.index_select(0, index[k])
            weights = getattr(self, f"weights_{nu}").to(a.dtype)
            prod = prod * weights.view(-1, *([1] * (a.dim() - 1)))
            out = out.index_add(0, getattr(self, f"rows_{nu}"), prod)
        return out
