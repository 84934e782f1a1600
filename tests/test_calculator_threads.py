"""One CACECalculator shared by two threads gives each thread its own structure's results."""

import copy
import threading

import numpy as np
from ase import Atoms
from ase.build import molecule
from conftest import make_model

from cace_calc import CACECalculator

N_CALLS = 20


def water_box() -> Atoms:
    """64 water molecules on a 4x4x4 grid in a 12.4 A periodic box (192 atoms)."""
    h2o = molecule("H2O")
    atoms = Atoms(cell=[12.4] * 3, pbc=True)
    for i in range(4):
        for j in range(4):
            for k in range(4):
                m = h2o.copy()
                m.translate(np.array([i, j, k]) * 3.1 + 1.0)
                atoms += m
    return atoms


def _frames(base: Atoms, seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(N_CALLS):
        a = base.copy()
        a.positions += rng.normal(scale=0.03, size=a.positions.shape)
        frames.append(a)
    return frames


def test_shared_calculator_two_threads():
    calc = CACECalculator(make_model(("bchi",), elements=(1, 8)), device="cpu")
    jobs = {"box": _frames(water_box(), 0), "molecule": _frames(molecule("H2O"), 1)}
    assert len(jobs["box"][0]) == 192

    reference = {}
    serial = CACECalculator(calc.model, device="cpu")
    for name, frames in jobs.items():
        reference[name] = []
        for a in frames:
            a = a.copy()
            a.calc = serial
            reference[name].append((a.get_potential_energy(), a.get_forces(), a.get_potential_energies()))

    got = {name: [] for name in jobs}
    errors = []
    start = threading.Barrier(2)

    def work(name):
        try:
            start.wait()
            for a in jobs[name]:
                a.calc = calc
                got[name].append((a.get_potential_energy(), a.get_forces(), a.get_potential_energies()))
        except Exception as e:  # reported below with the thread's name
            errors.append(f"{name}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for name in jobs:
        assert len(got[name]) == N_CALLS
        for (e, f, ea), (e_ref, f_ref, ea_ref) in zip(got[name], reference[name]):
            assert f.shape == f_ref.shape
            assert abs(e - e_ref) < 1e-9
            np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-9)
            np.testing.assert_allclose(ea, ea_ref, rtol=0, atol=1e-9)


def test_calculator_can_still_be_copied():
    calc = CACECalculator(make_model(("bchi",), elements=(1, 8)), device="cpu")
    clone = copy.deepcopy(calc)
    a = molecule("H2O")
    a.calc = clone
    b = a.copy()
    b.calc = calc
    assert a.get_potential_energy() == b.get_potential_energy()
