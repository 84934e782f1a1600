"""Message-passing blocks of CACE: Bchi (node-weighted edge basis), Ar (decayed neighbour
density) and M (memory of the node's own density). Each holds its parameters and does the
per-node work; the sums over edges are done by the model on its edge tensors."""

import torch


class BchiMessage(torch.nn.Module):
    """w_j = Linear(flatten(B_j)), read as [L, C] with L = l_max + 1 (one weight per angular order
    l and element channel c, later broadcast to every v of order l).

    With ``shared_l`` one weight serves every l; with ``shared_channels`` one serves every
    channel. Input B [N, m, S, C]; output [N, L, C].
    """

    def __init__(self, n_features: int, l_max: int, n_channels: int,
                 shared_l: bool = False, shared_channels: bool = False):
        super().__init__()
        self.shape = (l_max + 1, n_channels)
        self.n_l = 1 if shared_l else l_max + 1
        self.n_c = 1 if shared_channels else n_channels
        self.linear = torch.nn.Linear(n_features, self.n_l * self.n_c, dtype=torch.float64)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        w = self.linear(b.reshape(b.shape[0], -1)).reshape(-1, self.n_l, self.n_c)
        return w.expand(-1, *self.shape)


class ArMessage(torch.nn.Module):
    """Per-edge factor a_l[m, c] exp(-d kappa_l[m, c]) f(d) applied to the sender's density.

    Parameters ``prefactor`` and ``invr0`` have shape [L, m, C]; ``edge_factor`` returns the
    factor per edge broadcast to every v: [V, C, E, m] (d in Angstrom, f the cutoff value).
    """

    def __init__(self, l_max: int, n_radial: int, n_channels: int, l_of_v: torch.Tensor):
        super().__init__()
        shape = (l_max + 1, n_radial, n_channels)
        self.prefactor = torch.nn.Parameter(torch.ones(shape, dtype=torch.float64))
        self.invr0 = torch.nn.Parameter(torch.full(shape, 0.5, dtype=torch.float64))
        self.register_buffer("l_of_v", l_of_v.clone(), persistent=False)

    def edge_factor(self, d: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        a = self.prefactor[self.l_of_v].transpose(1, 2).unsqueeze(2)  # [V, C, 1, m]
        k = self.invr0[self.l_of_v].transpose(1, 2).unsqueeze(2)
        return a * torch.exp(-d[:, None] * k) * f[:, None]


class MemoryMessage(torch.nn.Module):
    """M(A)[v, c, i, m] = A[v, c, i, m] mu_l(v)[m, c]; ``coef`` has shape [L, m, C]."""

    def __init__(self, l_max: int, n_radial: int, n_channels: int, l_of_v: torch.Tensor):
        super().__init__()
        self.coef = torch.nn.Parameter(torch.ones(l_max + 1, n_radial, n_channels, dtype=torch.float64))
        self.register_buffer("l_of_v", l_of_v.clone(), persistent=False)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.coef[self.l_of_v].transpose(1, 2).unsqueeze(2)
