"""Cartesian angular basis: monomials u_x^lx u_y^ly u_z^lz of the unit edge vector."""

from math import factorial

import torch


def angular_exponents(l_max: int) -> list[tuple[int, int, int]]:
    """All exponent triples (lx, ly, lz) with lx+ly+lz <= l_max, in CACE order.

    Ordered by l, and within one l in descending lexicographic order:
    (0,0,0); (1,0,0),(0,1,0),(0,0,1); (2,0,0),(1,1,0),(1,0,1),(0,2,0),(0,1,1),(0,0,2); ...
    """
    if l_max < 0:
        raise ValueError(f"l_max must be >= 0, got {l_max}")
    out = []
    for l in range(l_max + 1):
        for lx in range(l, -1, -1):
            for ly in range(l - lx, -1, -1):
                out.append((lx, ly, l - lx - ly))
    return out


def multinomial(v: tuple[int, int, int]) -> int:
    """M(v) = l! / (lx! ly! lz!), the number of orderings of the monomial's factors."""
    return factorial(sum(v)) // (factorial(v[0]) * factorial(v[1]) * factorial(v[2]))


class CartesianAngular(torch.nn.Module):
    """L_v(u) for every exponent triple v with |v| <= l_max.

    Input: unit vectors with their 3 components along ``dim`` ([E, 3] by default). Output: the
    same shape with V = (l_max+1)(l_max+2)(l_max+3)/6 components along ``dim``, in
    :func:`angular_exponents` order. Monomials of order l are built from those of order l-1 by one
    multiplication (never ``u ** v``, whose second derivative is NaN at zero exponents on some
    devices), so the loop runs over l, not over monomials.
    """

    def __init__(self, l_max: int):
        super().__init__()
        self.l_max = l_max
        exps = angular_exponents(l_max)
        index = {v: i for i, v in enumerate(exps)}
        self.n_components = len(exps)
        for l in range(1, l_max + 1):
            parents, axes = [], []
            for v in exps:
                if sum(v) != l:
                    continue
                k = next(k for k in range(3) if v[k] > 0)
                w = list(v)
                w[k] -= 1
                parents.append(index[tuple(w)])
                axes.append(k)
            self.register_buffer(f"parent_{l}", torch.tensor(parents), persistent=False)
            self.register_buffer(f"axis_{l}", torch.tensor(axes), persistent=False)
        # order l_of_v[v] for broadcasting per-l weights to every component
        self.register_buffer("l_of_v", torch.tensor([sum(v) for v in exps]), persistent=False)
        # [start, stop) of the components of each order l (they are contiguous)
        self.l_blocks = [(l * (l + 1) * (l + 2) // 6, (l + 1) * (l + 2) * (l + 3) // 6) for l in range(l_max + 1)]

    def blocks(self, unit: torch.Tensor, dim: int = 1) -> list[torch.Tensor]:
        """The components of each order l as separate tensors (V_l along ``dim``), l = 0..l_max."""
        blocks = [torch.ones_like(unit.narrow(dim, 0, 1))]
        for l in range(1, self.l_max + 1):
            parent = getattr(self, f"parent_{l}") - self.l_blocks[l - 1][0]
            axis = getattr(self, f"axis_{l}")
            blocks.append(blocks[-1].index_select(dim, parent) * unit.index_select(dim, axis))
        return blocks

    def forward(self, unit: torch.Tensor, dim: int = 1) -> torch.Tensor:
        return torch.cat(self.blocks(unit, dim), dim=dim)
