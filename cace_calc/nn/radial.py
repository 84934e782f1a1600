"""Radial part of the edge basis: Bessel functions, polynomial cutoff, per-l radial mixing."""

import math

import torch


class BesselBasis(torch.nn.Module):
    """g_n(d) = P sin(w_n d) / d for n = 1..n_rbf, d in Angstrom.

    w_n are trainable and start at n pi / r_c; P = sqrt(2 / r_c) is a stored buffer so that a
    converted model uses its stored value bit for bit. Output: d's shape with a new axis of
    size n_rbf inserted at ``dim`` ([E] -> [E, n_rbf] by default).
    """

    def __init__(self, n_rbf: int, cutoff: float):
        super().__init__()
        freqs = torch.arange(1, n_rbf + 1, dtype=torch.float64) * math.pi / cutoff
        self.freqs = torch.nn.Parameter(freqs)
        self.register_buffer("prefactor", torch.tensor(math.sqrt(2.0 / cutoff), dtype=torch.float64))

    def forward(self, d: torch.Tensor, dim: int = -1) -> torch.Tensor:
        d = d.unsqueeze(dim)
        trailing = d.dim() - 1 - (dim % d.dim())
        freqs = self.freqs.view(-1, *([1] * trailing))
        return self.prefactor * torch.sin(freqs * d) / d


class PolynomialCutoff(torch.nn.Module):
    """Smooth cutoff f(d) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = d/r_c.

    Zero for d >= r_c. ``cutoff`` (Angstrom) and ``p`` are buffers. Output [E].
    """

    def __init__(self, cutoff: float, p: float = 6.0):
        super().__init__()
        self.register_buffer("cutoff", torch.tensor(float(cutoff), dtype=torch.float64))
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float64))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = d / self.cutoff
        xp = torch.pow(x, p)
        f = (
            1.0
            - 0.5 * (p + 1.0) * (p + 2.0) * xp
            + p * (p + 2.0) * xp * x
            - 0.5 * p * (p + 1.0) * xp * x * x
        )
        return f * (d < self.cutoff)


class RadialTransform(torch.nn.Module):
    """Channel-wise radial mixing, one weight per angular order l, shared by the v of that l.

    A[v, c, i, m] = sum_n A0[v, c, i, n] W_{l(v)}[n, m, c]; weights [l_max+1, n_in, n_out, C].
    Input [V, C, N, n_in], output [V, C, N, n_out] (one batched matmul over (v, c)).
    """

    def __init__(self, l_max: int, n_in: int, n_out: int, n_channels: int, l_of_v: torch.Tensor):
        super().__init__()
        w = torch.randn(l_max + 1, n_in, n_out, n_channels, dtype=torch.float64) / math.sqrt(n_in)
        self.weights = torch.nn.Parameter(w)
        self.register_buffer("l_of_v", l_of_v.clone(), persistent=False)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        n_v, n_c, n_atoms, n_in = a.shape
        w = self.weights[self.l_of_v].permute(0, 3, 1, 2).reshape(n_v * n_c, n_in, -1)  # [V*C, n, m]
        return torch.bmm(a.reshape(n_v * n_c, n_atoms, n_in), w).view(n_v, n_c, n_atoms, -1)
