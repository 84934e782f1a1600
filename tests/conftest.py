"""Shared fixtures: tiny seeded models built in-process and small test structures."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from cace_calc import CACE, CACEConfig

# The development data (training data, the published CACE models): ../shared beside the checkout,
# or $CACE_SHARED. Tests that read it carry @pytest.mark.requires_shared and are skipped without
# it (a fresh clone); CACE_SHARED="" (or any missing folder) acts as a fresh clone.
if "CACE_SHARED" in os.environ:
    SHARED = Path(os.environ["CACE_SHARED"] or "/nonexistent/cace-shared")  # "" means none
else:
    SHARED = Path(__file__).resolve().parents[2] / "shared"
HAVE_SHARED = SHARED.is_dir()
REFERENCE = SHARED / "reference"
SHARED_REASON = ("needs the development data (../shared or $CACE_SHARED; see README 'Development data'): "
                 + ("CACE_SHARED is empty" if os.environ.get("CACE_SHARED") == "" else f"{SHARED} not found"))


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_shared: reads the development data in ../shared; "
                                       "skipped when it is missing")


def pytest_collection_modifyitems(config, items):
    if HAVE_SHARED:
        return
    skip = pytest.mark.skip(reason=SHARED_REASON)
    for item in items:
        if "requires_shared" in item.keywords:
            item.add_marker(skip)


def random_rotation(rng: np.random.Generator, proper: bool = True) -> np.ndarray:
    """A random 3x3 orthogonal matrix; ``proper=False`` gives one with determinant -1."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] = -q[:, 0]
    return q


def make_model(messages=("bchi",), *, embed_receiver=True, nu_max=4, l_max=3, n_layers=1,
               elements=(1, 6, 8), seed=0, cutoff=4.0, n_heads=1, zbl_radii=None) -> CACE:
    """A small random CACE model in float64 with non-zero E0."""
    torch.manual_seed(seed)
    cfg = CACEConfig(elements=list(elements), cutoff=cutoff, n_rbf=4, n_radial=3, l_max=l_max,
                     nu_max=nu_max, n_embed=2, embed_receiver=embed_receiver, n_layers=n_layers,
                     messages=list(messages), avg_num_neighbors=8.0, readout_hidden=[8, 4],
                     n_heads=n_heads, zbl_radii=zbl_radii)
    model = CACE(cfg)
    with torch.no_grad():
        model.e0.copy_(torch.linspace(-3.0, -1.0, len(elements), dtype=torch.float64))
    model.requires_grad_(False)
    return model.eval()


@pytest.fixture(scope="session")
def model():
    """Bchi, Ar and memory messages, nu up to 4: every code path of the model."""
    return make_model(("bchi", "ar", "memory"))


@pytest.fixture(scope="session")
def bchi_model():
    """Bchi only, one shared embedding table, two layers."""
    return make_model(("bchi",), embed_receiver=False, n_layers=2)


def water_cluster() -> Atoms:
    """Two water molecules and a methane, isolated (no cell)."""
    a = molecule("H2O")
    b = molecule("H2O")
    b.translate([2.8, 0.3, 0.2])
    c = molecule("CH4")
    c.translate([0.5, 3.0, -0.4])
    atoms = a + b + c
    rng = np.random.default_rng(1)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def periodic_cell() -> Atoms:
    """A small triclinic periodic cell of C, H and O (smaller than twice the cutoff)."""
    rng = np.random.default_rng(2)
    cell = np.array([[4.6, 0.0, 0.0], [0.9, 4.3, 0.0], [0.4, -0.7, 4.9]])
    frac = rng.random((10, 3))
    atoms = Atoms("C2H5O3", scaled_positions=frac, cell=cell, pbc=True)
    # push atoms apart a little so no pair is unphysically close
    atoms.positions += rng.normal(scale=0.02, size=(10, 3))
    return atoms


def slab() -> Atoms:
    """Periodic in x and y only."""
    atoms = bulk("C", "diamond", a=3.6, cubic=True)
    atoms.numbers[[1, 5]] = 8
    atoms.numbers[[2]] = 1
    atoms.pbc = [True, True, False]
    atoms.cell[2] = [0.0, 0.0, 0.0]
    rng = np.random.default_rng(3)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


@pytest.fixture(params=["cluster", "periodic", "slab"])
def structure(request) -> Atoms:
    return {"cluster": water_cluster, "periodic": periodic_cell, "slab": slab}[request.param]()
