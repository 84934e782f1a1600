"""Radial distribution functions of MD frames, from neighbour lists (fast for long runs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from .graph import neighbour_list


def radial_distribution(frames: Sequence[Atoms], a: str | int, b: str | int, r_max: float,
                        n_bins: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Partial radial distribution function g_ab(r) averaged over periodic ``frames``.

    ``a``, ``b``: element symbols or atomic numbers (the same for g_aa). Counts every periodic
    image within ``r_max`` (A), so r_max may exceed half the box. Returns bin centres r (A) and
    g(r), normalised so that g -> 1 for an uncorrelated liquid.
    """
    unknown = [x for x in (a, b) if isinstance(x, str) and x not in atomic_numbers]
    if unknown:
        raise ValueError(f"unknown element symbol {unknown[0]!r}")
    za = atomic_numbers[a] if isinstance(a, str) else int(a)
    zb = atomic_numbers[b] if isinstance(b, str) else int(b)
    if not frames:
        raise ValueError("frames is empty")
    if r_max <= 0 or n_bins < 1:
        raise ValueError(f"need r_max > 0 and n_bins >= 1, got r_max={r_max}, n_bins={n_bins}")
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist = np.zeros(n_bins)
    density_pairs = 0.0  # sum over frames of n_a * n_b / V (ordered pairs per volume)
    for i, atoms in enumerate(frames):
        if not atoms.pbc.all():
            raise ValueError(f"frame {i} is not periodic in all directions: g(r) needs a volume")
        numbers = atoms.numbers
        n_a, n_b = int((numbers == za).sum()), int((numbers == zb).sum())
        if n_a == 0 or n_b == 0:
            raise ValueError(f"frame {i} has no atoms of element {za if n_a == 0 else zb}")
        recv, send, shifts = neighbour_list(atoms, r_max)
        keep = (numbers[recv] == za) & (numbers[send] == zb)
        vec = atoms.positions[recv[keep]] - atoms.positions[send[keep]] + shifts[keep]
        hist += np.histogram(np.linalg.norm(vec, axis=1), bins=edges)[0]
        density_pairs += n_a * (n_b - (za == zb)) / atoms.get_volume()
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return 0.5 * (edges[1:] + edges[:-1]), hist / (density_pairs * shell)
