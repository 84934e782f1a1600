"""scripts/snap_defect_data.py: the defect geometries placed in a perfect bcc cell before SNAP
relaxes and heats them (no LAMMPS needed for the placement)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import snap_defect_data  # noqa: E402

A = 3.2  # A


def place(kind, seed=0):
    perfect = bulk("W", "bcc", a=A, cubic=True).repeat(3)
    atoms, shift = snap_defect_data.with_defect(perfect, kind, np.random.default_rng(seed), {"W": 0.25})
    return perfect, atoms, shift


@pytest.mark.parametrize("kind, nearest", [
    ("octahedral", A / 2),                 # face centre or edge midpoint: two neighbours at a/2
    ("tetrahedral", A * np.sqrt(5) / 4),   # four neighbours at a sqrt(5)/4
])
def test_site_interstitials_sit_on_their_site(kind, nearest):
    perfect, atoms, shift = place(kind)
    assert len(atoms) == len(perfect) + 1 and shift == 0.0
    d = np.sort(atoms.get_distances(len(atoms) - 1, range(len(atoms) - 1), mic=True))
    assert d[0] == pytest.approx(nearest, abs=1e-9)
    assert np.allclose(d[:{"octahedral": 2, "tetrahedral": 4}[kind]], nearest)


@pytest.mark.parametrize("kind, axis", [("sia100", (1, 0, 0)), ("sia110", (1, 1, 0)), ("sia111", (1, 1, 1))])
def test_dumbbells_point_along_their_axis(kind, axis):
    for seed in range(4):
        perfect, atoms, _ = place(kind, seed)
        moved = np.flatnonzero(np.linalg.norm(atoms.positions[:-1] - perfect.positions, axis=1) > 1e-9)
        assert len(moved) == 1
        bond = atoms.get_distance(int(moved[0]), len(atoms) - 1, mic=True, vector=True)
        assert np.linalg.norm(bond) == pytest.approx(0.8 * A * np.sqrt(3) / 2)
        assert sorted(np.abs(bond) > 1e-9) == sorted(np.array(axis) > 0)
        assert np.ptp(np.abs(bond)[np.abs(bond) > 1e-9]) < 1e-9   # the nonzero components are equal


def test_every_kind_the_command_line_offers_is_placed():
    removed = {"perfect": 0, "vacancy": 1, "divacancy1": 2, "divacancy2": 2}
    for kind in snap_defect_data.DEFECTS + snap_defect_data.METASTABLE:
        perfect, atoms, shift = place(kind)
        assert len(atoms) == len(perfect) - removed.get(kind, -1)
        assert shift == pytest.approx(0.25 * removed.get(kind, 0))   # the PBE shift per vacancy
