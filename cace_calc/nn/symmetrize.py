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
    """B[s, ...] = sum_terms w * prod_k A[v_k, ...] for A [V, ...] (angular component first, any
    trailing shape); output B [n_sym, ...].

    Written term by term on views A[v] with constant indices: no gathers or scatters in either
    pass, and torch.compile fuses the whole sum into one kernel per pass
    (:meth:`CACE.use_compiled_kernels`).
    """

    def __init__(self, l_max: int, nu_max: int):
        super().__init__()
        self.features = invariant_terms(l_max, nu_max)
        self.n_sym = len(self.features)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        x = a.unbind(0)
        rows = []
        for _, terms in self.features:
            total = None
            for w, vs in terms:
                term = x[vs[0]]
                for v in vs[1:]:
                    term = term * x[v]
                if w != 1.0:
                    term = term * w
                total = term if total is None else total + term
            rows.append(total)
        return torch.stack(rows)
