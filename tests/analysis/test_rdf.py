"""g(r) from neighbour lists against brute-force minimum-image distances."""

import numpy as np
import pytest
from ase import Atoms

from cace_calc.rdf import radial_distribution


def random_box(seed: int, n: int = 36, length: float = 9.0) -> Atoms:
    rng = np.random.default_rng(seed)
    numbers = np.where(np.arange(n) % 3 == 0, 8, 1)
    return Atoms(numbers=numbers, positions=rng.uniform(0, length, (n, 3)), cell=[length] * 3, pbc=True)


def brute_force(frames, za, zb, r_max, n_bins):
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist, norm = np.zeros(n_bins), 0.0
    for atoms in frames:
        ia, ib = np.flatnonzero(atoms.numbers == za), np.flatnonzero(atoms.numbers == zb)
        d = atoms.get_all_distances(mic=True)[np.ix_(ia, ib)]
        if za == zb:
            d = d[~np.eye(len(ia), dtype=bool)]
        hist += np.histogram(d.ravel(), bins=edges)[0]
        norm += len(ia) * (len(ib) - (za == zb)) / atoms.get_volume()
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return hist / (norm * shell)


@pytest.mark.parametrize(("a", "b"), [("O", "O"), ("O", "H"), ("H", "O"), (1, 1)])
def test_rdf_matches_minimum_image_distances(a, b):
    frames = [random_box(s) for s in range(3)]
    r, g = radial_distribution(frames, a, b, r_max=4.4, n_bins=44)
    za = {"O": 8, "H": 1}.get(a, a)
    zb = {"O": 8, "H": 1}.get(b, b)
    np.testing.assert_allclose(g, brute_force(frames, za, zb, 4.4, 44), rtol=1e-12)
    np.testing.assert_allclose(r[:2], [0.05, 0.15])


def test_rdf_beyond_half_the_box_counts_every_image():
    """An ideal gas tends to g = 1 at any r, also past half the box, where minimum image fails."""
    frames = [random_box(s, n=60, length=6.0) for s in range(40)]
    r, g = radial_distribution(frames, "H", "H", r_max=5.5, n_bins=11)
    assert r[-1] > 3.0
    np.testing.assert_allclose(g[4:], 1.0, atol=0.1)


def test_rdf_errors():
    with pytest.raises(ValueError, match="periodic"):
        radial_distribution([Atoms("H2O", positions=np.eye(3))], "O", "H", r_max=3.0)
    with pytest.raises(ValueError, match="no atoms of element 6"):
        radial_distribution([random_box(0)], "C", "H", r_max=3.0)
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        radial_distribution([random_box(0)], "Xx", "H", r_max=3.0)
    with pytest.raises(ValueError, match="empty"):
        radial_distribution([], "O", "H", r_max=3.0)
