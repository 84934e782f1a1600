"""Shared pieces of the i-PI tests: a tiny water box, a tiny model, and i-PI servers that
are always stopped. Every wait has a timeout; socket names are unique per test."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from conftest import make_model

from cace_calc import save_model
from cace_calc.ipi.inputs import PIMDSettings, socket_forcefield_xml, write_pimd_input
from cace_calc.ipi.launch import ipi_executable
from cace_calc.ipi.protocol import DEFAULT_SOCKETS_PREFIX

TIMEOUT = 60.0  # s, upper bound for any single wait in these tests


@functools.cache
def water_model():
    """A tiny random float64 model for H and O."""
    return make_model(elements=(1, 8), cutoff=3.0, seed=3)


def model_file(directory: Path) -> Path:
    return save_model(water_model(), Path(directory) / "model.pt")


def water_box() -> Atoms:
    """Three slightly distorted water molecules in a periodic 6 A box (9 atoms)."""
    atoms = Atoms(cell=np.eye(3) * 6.0, pbc=True)
    for shift in [(0.0, 0.0, 0.0), (3.0, 0.2, 0.1), (0.3, 3.0, 3.0)]:
        w = molecule("H2O")
        w.translate(np.array(shift) + 1.5)
        atoms += w
    atoms.positions += np.random.default_rng(7).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def socket_name() -> str:
    return f"cct-{os.getpid()}-{secrets.token_hex(3)}"


def write_socket_input(directory: Path, atoms: Atoms, name: str, *, batch_size: int = 1,
                       symbols: str | None = None, **settings) -> PIMDSettings:
    cfg = PIMDSettings(**settings)
    ff = socket_forcefield_xml(unix=name, symbols=symbols or "".join(atoms.get_chemical_symbols()),
                               pbc=atoms.pbc, batch_size=batch_size)
    write_pimd_input(atoms, directory, cfg, forcefield_xml=ff)
    return cfg


@contextlib.contextmanager
def ipi_server(directory: Path, name: str):
    """Start ``i-pi input.xml`` in ``directory``; wait for its socket; always stop it."""
    with open(directory / "i-pi.log", "w") as log:
        proc = subprocess.Popen(ipi_executable() + ["input.xml"], cwd=directory, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + TIMEOUT
            while not os.path.exists(DEFAULT_SOCKETS_PREFIX + name):
                assert proc.poll() is None, (directory / "i-pi.log").read_text()
                assert time.monotonic() < deadline, "i-PI did not open its socket"
                time.sleep(0.05)
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(TIMEOUT)
            with contextlib.suppress(OSError):
                os.unlink(DEFAULT_SOCKETS_PREFIX + name)


class DriverThread(threading.Thread):
    """Runs ``driver.run(**kwargs)`` and keeps its result or exception."""

    def __init__(self, driver, **kwargs):
        super().__init__(daemon=True)
        self.driver, self.kwargs = driver, kwargs
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.driver.run(**self.kwargs)
        except Exception as e:  # noqa: BLE001  (any failure is reported by the test)
            self.error = e

    def finish(self, timeout: float = TIMEOUT):
        self.join(timeout)
        assert not self.is_alive(), "the driver did not stop"
        return self.result


def serve_run(directory: Path, name: str, driver) -> int:
    """Run i-PI in ``directory`` with ``driver`` on unix socket ``name`` until both end cleanly;
    returns the number of structures the driver evaluated."""
    with ipi_server(directory, name) as ipi:
        thread = DriverThread(driver, unix=name, timeout=TIMEOUT)
        thread.start()
        n = thread.finish()
        assert thread.error is None, thread.error
        assert ipi.wait(TIMEOUT) == 0
    return n
