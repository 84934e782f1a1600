"""Short-range nuclear repulsion: the universal ZBL screened Coulomb potential (Ziegler,
Biersack, Littmark, The Stopping and Range of Ions in Solids, 1985), switched off smoothly
below the distances a model was trained on, so that atoms driven together repel as nuclei do.

E(r) = Z_i Z_j e^2 / (4 pi eps0 r) phi(r / a) s(r), a = 0.46850 A / (Z_i^0.23 + Z_j^0.23),
phi(x) = 0.18175 e^{-3.19980 x} + 0.50986 e^{-0.94229 x} + 0.28022 e^{-0.40290 x}
+ 0.02817 e^{-0.20162 x}; s = 1 below r_inner = INNER_FRACTION * r_outer, 0 from r_outer on, a
C2 polynomial (smootherstep) between. Energies in eV, distances in Angstrom.
"""

from __future__ import annotations

import torch

COULOMB = 14.399645  # e^2 / (4 pi eps0) in eV A
SCREENING_LENGTH = 0.46850  # A
SCREENING_EXPONENT = 0.23
PHI_COEFFICIENTS = (0.18175, 0.50986, 0.28022, 0.02817)
PHI_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)
INNER_FRACTION = 0.5  # the core is fully on below half of r_outer


def zbl_pair_energy(z1: torch.Tensor, z2: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Unswitched ZBL energy (eV) of pairs with atomic numbers z1, z2 at distances r (A)."""
    a = SCREENING_LENGTH / (z1**SCREENING_EXPONENT + z2**SCREENING_EXPONENT)
    x = r / a
    phi = sum(c * torch.exp(-e * x) for c, e in zip(PHI_COEFFICIENTS, PHI_EXPONENTS))
    return COULOMB * z1 * z2 / r * phi


def smootherstep_off(r: torch.Tensor, r_inner: torch.Tensor, r_outer: torch.Tensor) -> torch.Tensor:
    """1 below r_inner, 0 above r_outer, 1 - (10 t^3 - 15 t^4 + 6 t^5) between (C2)."""
    t = ((r - r_inner) / (r_outer - r_inner)).clamp(0.0, 1.0)
    return 1.0 - t**3 * (10.0 - 15.0 * t + 6.0 * t * t)


class ZBLCore(torch.nn.Module):
    """Per-edge ZBL energies, switched off at ``r_outer`` [nz, nz] (A, per element pair in
    embedding order). Each pair appears as two edges; each edge gives half of the pair energy
    to its receiver, so per-atom energies, forces and virials follow from the edges alone
    (also across MPI ranks)."""

    def __init__(self, elements: list[int], r_outer: list[list[float]]):
        super().__init__()
        r_outer_t = torch.tensor(r_outer, dtype=torch.float64)
        nz = len(elements)
        if r_outer_t.shape != (nz, nz):
            raise ValueError(f"zbl_radii must be a {nz} x {nz} matrix (one radius per element pair), "
                             f"got shape {tuple(r_outer_t.shape)}")
        if not torch.isfinite(r_outer_t).all() or (r_outer_t <= 0).any():
            raise ValueError("zbl_radii must be positive distances in Angstrom")
        if not torch.equal(r_outer_t, r_outer_t.T):
            raise ValueError("zbl_radii must be symmetric: one radius per element pair")
        self.register_buffer("z", torch.tensor(elements, dtype=torch.float64))
        self.register_buffer("r_outer", r_outer_t)
        self.max_radius = float(r_outer_t.max())

    def forward(self, species_receivers: torch.Tensor, species_senders: torch.Tensor,
                distances: torch.Tensor) -> torch.Tensor:
        """Half pair energies per edge [E] (eV) from element indices of both ends [E] and
        distances [E] (A)."""
        r_out = self.r_outer.to(distances.dtype)[species_receivers, species_senders]
        z = self.z.to(distances.dtype)
        # distances beyond every radius give exactly 0 (and a zero gradient): evaluate near ones only
        r = torch.where(distances < r_out, distances, r_out)
        e = zbl_pair_energy(z[species_receivers], z[species_senders], r)
        return 0.5 * e * smootherstep_off(r, INNER_FRACTION * r_out, r_out)
