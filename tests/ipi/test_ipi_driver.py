"""The i-PI socket driver against a real i-PI server on unix sockets."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from ase import units
from ipi_helpers import (
    TIMEOUT,
    DriverThread,
    ipi_server,
    model_file,
    serve_run,
    socket_name,
    water_box,
    water_model,
    write_socket_input,
)

from cace_calc import CACECalculator
from cace_calc.cli import main
from cace_calc.errors import UnsupportedElementError
from cace_calc.ipi import CACEDriver, IPIConnectionError
from cace_calc.ipi.driver import parse_init_string, symbols_to_numbers
from cace_calc.ipi.results import read_pimd_results


def test_init_string_parsing():
    pars = parse_init_string(" symbols : OHHC , pbc : TTF ,  batch_size:4")
    assert pars == {"symbols": "OHHC", "pbc": "TTF", "batch_size": "4"}
    assert symbols_to_numbers("OHHCl").tolist() == [8, 1, 1, 17]
    with pytest.raises(ValueError, match="unknown chemical symbol 'Xx'"):
        symbols_to_numbers("OXx")


def test_socket_pimd_matches_ase(tmp_path):
    """4 beads, 3 steps through one driver: i-PI's energies, forces and virial are the ASE
    calculator's on the same configurations, in eV after i-PI's atomic units."""
    atoms, name = water_box(), socket_name()
    write_socket_input(tmp_path, atoms, name, beads=4, steps=3, trajectory_stride=1, write_forces=True)
    calc = CACECalculator(water_model())
    driver = CACEDriver(calc, template=atoms)
    n = serve_run(tmp_path, name, driver)
    assert n == 4 * 4  # (step 0 + 3 steps) x 4 beads, one structure per exchange

    res = read_pimd_results(tmp_path)
    assert res.step.tolist() == [0, 1, 2, 3] and res.n_beads == 4
    # step 0: every bead sits on the start structure
    ref = atoms.copy()
    ref.calc = calc
    e0, s0 = ref.get_potential_energy(), ref.get_stress(voigt=False)
    assert abs(res.potential_energy[0] - e0) < 1e-6  # i-PI prints 8 digits (here ~1e-7 eV)
    # virial_cv is the bead average of -stress (ASE sign) for a periodic cell
    assert np.abs(s0).max() > 1e-3
    np.testing.assert_allclose(res.virial_stress[0], -s0, rtol=1e-6, atol=1e-9)
    # later steps: each bead's energy and forces, at the positions i-PI wrote
    for bead in range(4):
        frames = res.read_trajectory(bead)
        assert len(frames) == 4
        for k in (1, 3):
            ipi_forces = frames[k].get_forces()
            frames[k].calc = calc
            assert abs(frames[k].get_potential_energy() - res.bead_potential_energies[k, bead]) < 2e-6
            np.testing.assert_allclose(ipi_forces, frames[k].get_forces(), atol=1e-5)
    assert np.ptp(res.bead_potential_energies[3]) > 1e-4  # the beads really moved apart
    np.testing.assert_allclose(res.potential_energy, res.bead_potential_energies.mean(axis=1), atol=1e-6)
    # the centroid is the bead average; kinetic energy at step 0 is 3/2 kT per atom
    cen = res.read_trajectory()[2].positions
    beads = np.mean([res.read_trajectory(b)[2].positions for b in range(4)], axis=0)
    np.testing.assert_allclose(cen, beads, atol=1e-6)
    np.testing.assert_allclose(res.kinetic_energy_per_atom["H"][0], 1.5 * units.kB * 300.0, rtol=1e-5)


class SlowCalculator(CACECalculator):
    """Takes a while per call, so that i-PI must hand work to the other driver too."""

    def calculate_batch(self, images, **kwargs):
        time.sleep(0.3)
        return super().calculate_batch(images, **kwargs)


def test_two_drivers_share_a_batched_run(tmp_path):
    """Two drivers serve one run; i-PI hands each 2 beads per exchange (batched protocol)."""
    atoms, name = water_box(), socket_name()
    write_socket_input(tmp_path, atoms, name, batch_size=2, beads=4, steps=3)
    drivers = [CACEDriver(SlowCalculator(water_model()), template=atoms) for _ in range(2)]
    threads = [DriverThread(d, unix=name, wait=TIMEOUT, timeout=TIMEOUT) for d in drivers]
    for t in threads:  # both are waiting when i-PI opens the socket
        t.start()
    with ipi_server(tmp_path, name) as ipi:
        counts = [t.finish() for t in threads]
        assert [t.error for t in threads] == [None, None]
        assert ipi.wait(TIMEOUT) == 0
    assert sum(counts) == 16 and min(counts) >= 2, counts
    res = read_pimd_results(tmp_path)
    ref = atoms.copy()
    ref.calc = CACECalculator(water_model())
    assert abs(res.potential_energy[0] - ref.get_potential_energy()) < 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server(tmp_path, capsys):
    driver = CACEDriver(water_model(), template=water_box())
    name = socket_name()
    with pytest.raises(IPIConnectionError, match=f"no i-PI server at unix socket '/tmp/ipi_{name}'"):
        driver.run(unix=name, timeout=5)
    with pytest.raises(IPIConnectionError, match="connection refused"):
        driver.run(host="127.0.0.1", port=_free_port(), timeout=5)
    with pytest.raises(ValueError, match="exactly one of"):
        driver.run(unix=name, host="localhost", port=1)
    start = time.monotonic()
    with pytest.raises(IPIConnectionError, match="no i-PI server"):
        driver.run(unix=name, wait=0.5)  # retries for 0.5 s, then gives up
    assert 0.4 < time.monotonic() - start < 5
    # the command line says the same and exits with 1
    water_box().write(tmp_path / "w.xyz")
    rc = main(["ipi", "--model", str(model_file(tmp_path)), "--unix", name, "--template", str(tmp_path / "w.xyz")])
    assert rc == 1
    assert "error: no i-PI server at unix socket" in capsys.readouterr().err


def test_server_killed_mid_run(tmp_path):
    """A driver process whose i-PI dies exits with 1 and says so; it does not hang."""
    atoms, name = water_box(), socket_name()
    write_socket_input(tmp_path, atoms, name, beads=2, steps=100000)
    atoms.write(tmp_path / "w.xyz")
    cmd = [sys.executable, "-m", "cace_calc.cli", "ipi", "--model", str(model_file(tmp_path)),
           "--unix", name, "--template", "w.xyz", "--device", "cpu", "--threads", "1"]
    with ipi_server(tmp_path, name) as ipi:
        drv = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + TIMEOUT
            out = tmp_path / "simulation.out"
            while not (out.exists() and len(out.read_text().splitlines()) > 40):  # a few steps done
                assert drv.poll() is None, drv.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
            os.kill(ipi.pid, signal.SIGKILL)
            _, err = drv.communicate(timeout=TIMEOUT)
        finally:
            if drv.poll() is None:
                drv.kill()
                drv.communicate()
    assert drv.returncode == 1
    assert "cace-calc ipi: error:" in err
    assert "closed the connection in the middle of the run" in err or "lost the connection" in err
    assert "Traceback" not in err


def test_unsupported_element(tmp_path):
    """Carbon in the structure, a model of H and O: the error names C, with a template right
    away, and without one at i-PI's INIT (elements from <parameters>)."""
    atoms = water_box()
    atoms.numbers[0] = 6
    with pytest.raises(UnsupportedElementError, match="element.s. C not supported"):
        CACEDriver(water_model(), template=atoms)
    name = socket_name()
    write_socket_input(tmp_path, atoms, name, beads=2, steps=2)
    driver = CACEDriver(water_model())
    with ipi_server(tmp_path, name):
        thread = DriverThread(driver, unix=name, timeout=TIMEOUT)
        thread.start()
        thread.finish()
    assert isinstance(thread.error, UnsupportedElementError)
    assert "C not supported" in str(thread.error)
    assert driver.n_structures == 0


def test_inet_socket_end_to_end(tmp_path):
    """A driver on an inet socket (how drivers on other machines connect): i-PI's energies are the
    ASE calculator's; the driver retries until the server listens and exits when i-PI ends."""
    from cace_calc.ipi.inputs import (
        PIMDSettings,
        socket_forcefield_xml,
        write_pimd_input,
    )
    from cace_calc.ipi.launch import ipi_executable

    atoms, port = water_box(), _free_port()
    ff = socket_forcefield_xml(host="127.0.0.1", port=port, symbols="".join(atoms.get_chemical_symbols()),
                               pbc=atoms.pbc)
    write_pimd_input(atoms, tmp_path, PIMDSettings(beads=2, steps=2), forcefield_xml=ff)
    calc = CACECalculator(water_model())
    thread = DriverThread(CACEDriver(calc, template=atoms), host="127.0.0.1", port=port, wait=TIMEOUT,
                          timeout=TIMEOUT)
    thread.start()  # before the server: it must wait for it
    with open(tmp_path / "i-pi.log", "w") as log:
        proc = subprocess.Popen(ipi_executable() + ["input.xml"], cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            n = thread.finish()
            assert thread.error is None, thread.error
            assert proc.wait(TIMEOUT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert n == 3 * 2  # (step 0 + 2 steps) x 2 beads
    ref = atoms.copy()
    ref.calc = calc
    assert abs(read_pimd_results(tmp_path).potential_energy[0] - ref.get_potential_energy()) < 1e-6
