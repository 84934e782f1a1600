"""Path-integral (and classical) molecular dynamics with i-PI and a CACE model, in one call.

>>> from ase.io import read
>>> from cace_calc.pimd import run_pimd
>>> res = run_pimd(read("water.xyz"), "water", "pimd-out", beads=32, temperature=300, steps=2000)
>>> res.averages(skip=500)["kinetic_energy_per_atom(H)"]   # eV

:func:`run_pimd` writes the i-PI input (:func:`write_pimd_input`), starts i-PI and the
CACE drivers, shows progress, and returns :class:`PIMDResults`. One bead is classical MD.
With ``uncertainty=True`` (models with several readout heads) i-PI runs a committee: every
head is a member, all served through the drivers' socket, and the results carry i-PI's
committee uncertainty and the drivers' watch of the calibrated per-atom force uncertainty
(``max_uncertainty`` stops the run).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write

from .checkpoint import load_model, resolve_model_path, save_model
from .graph import species_indices
from .ipi.bridge import HARTREE, model_label, require_committee
from .ipi.inputs import (
    FORCEFIELD_NAME,
    MEMBERS_NAME,
    OUTPUT_PREFIX,
    PIMDSettings,
    committee_forcefield_xml,
    inprocess_forcefield_xml,
    socket_forcefield_xml,
    standardize,
    write_pimd_input,
)
from .ipi.launch import run_ipi
from .ipi.protocol import DEFAULT_SOCKETS_PREFIX
from .ipi.results import FINAL_FRAMES, PIMDResults, read_pimd_results, read_restart_beads
from .ipi.watch import EXIT_FILE, EventFollower
from .model import CACE

__all__ = ["PIMDResults", "PIMDSettings", "read_pimd_results", "run_pimd", "write_committee_potentials",
           "write_pimd_input"]

MODES = ("socket", "inprocess")


def _socket_batch(beads: int, drivers: int) -> int:
    """Structures per exchange with each driver: all of its beads when they divide evenly."""
    return beads // drivers if beads % drivers == 0 else 1


def run_pimd(atoms: Atoms, model: str | os.PathLike | CACE, directory: str | os.PathLike, *,
             mode: str = "socket", drivers: int = 1, device: str | Sequence[str] = "auto",
             dtype: str = "float64", threads: int | None = None, progress: bool = True,
             timeout: float | None = None, uncertainty: bool = False, max_uncertainty: float | None = None,
             say=None, **settings) -> PIMDResults:
    """Run (path-integral) MD of ``atoms`` with i-PI and return the parsed results.

    Parameters
    ----------
    atoms: the start structure (Angstrom); rotated into i-PI's cell orientation if needed.
    model: pretrained name, model file or :class:`cace_calc.CACE`.
    directory: where the input, logs and outputs go; must not hold an earlier run.
    mode: ``"socket"``: ``drivers`` processes of ``cace-calc ipi`` on a unix socket, each
        handed ``beads/drivers`` beads per step when that divides evenly; ``"inprocess"``:
        the model runs inside i-PI and all beads of a step are one batched call.
    device: for each driver (a list is used round-robin, e.g. ``["cuda:0", "cuda:1"]``).
    dtype: ``"float64"`` or ``"float32"``. threads: torch CPU threads per driver (or of i-PI
        in-process).
    progress: show a progress bar. timeout: seconds before the run is abandoned.
    uncertainty: run i-PI's ``<ffcommittee>`` with one member per readout head, served by the
        socket drivers (the model needs several heads; one backward pass per head; not with
        ``mode="inprocess"``), its ``alpha`` set to the model's calibrated force factor
        ``uncertainty_scale[2]``. The results then hold the committee uncertainty and the
        members' energies, and ``committee_pot.dat`` each member's bead-averaged potential
        energy per output row (Hartree), the input of i-PI's ``i-pi-committee-reweight``.
        Each driver also watches the calibrated per-atom force sigma of every call (eV/A, the
        ``forces_uncertainty`` of ``CACECalculator(model, uncertainty="members")``): the largest
        of each call goes to ``uncertainty.log`` (``uncertainty-K.log`` per driver with several),
        a message goes to ``say`` (default: printed) once when it passes the model's threshold
        (metadata ``uncertainty.forces_threshold_ev_per_a``, set for the cheap estimate
        ``uncertainty=True`` and used as is), and the results carry the largest
        (``force_uncertainty``).
    max_uncertainty: eV/A (implies ``uncertainty``): when an atom's force sigma passes it, the
        driver writes the structures of that call (with their ``forces_uncertainty``) to
        ``uncertain.extxyz`` and creates i-PI's ``EXIT`` file, and i-PI ends the run softly after
        that step (if its own once-a-second check of ``EXIT`` comes first, it drops the
        unfinished step and ends at the one before). The last configuration, every bead, is in
        i-PI's checkpoint ``RESTART`` (kept every step for such runs) and written to
        ``final.extxyz``; ``simulation.out`` ends with the same step, and
        ``results.force_uncertainty.stopped`` is true.
    **settings: fields of :class:`PIMDSettings`: beads, temperature (K), steps, timestep_fs,
        pressure_gpa (None: NVT), thermostat, tau_fs, pile_lambda, barostat_tau_fs, piglet,
        seed, properties_stride, trajectory_stride, write_forces.

    Outputs in ``directory``: ``simulation.out`` (i-PI's properties, atomic units),
    ``simulation.pos_K.extxyz`` (bead K) and ``centroid.extxyz`` (trajectories in Angstrom,
    ASE-readable), ``i-pi.log``, ``driver-K.log``, ``input.xml``, ``RESTART`` (i-PI's checkpoint
    of the last step); with ``uncertainty`` also ``simulation.committee_K`` (bead K: i-PI's
    uncertainty, then the members' energies, Hartree), ``committee_pot.dat`` and
    ``uncertainty.log``; after a stop by ``max_uncertainty`` ``final.extxyz`` and
    ``uncertain.extxyz``.

    Raises ``ValueError`` for bad settings, :class:`cace_calc.errors.UnsupportedElementError`
    or :class:`cace_calc.errors.ModelFileError` before anything starts, and ``RuntimeError``
    with the log of the failing process if i-PI or a driver fails.
    """
    cfg = PIMDSettings(**settings)
    cfg.validate()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(drivers, int) or drivers < 1:
        raise ValueError(f"drivers must be a positive integer, got {drivers!r}")
    if mode == "inprocess" and drivers != 1:
        raise ValueError("mode='inprocess' runs the model inside i-PI: drivers must be 1")
    if max_uncertainty is not None:
        if not (np.isfinite(max_uncertainty) and max_uncertainty > 0):
            raise ValueError(f"max_uncertainty must be a positive force sigma in eV/A, got {max_uncertainty!r}")
        uncertainty = True
    if mode == "inprocess" and uncertainty:
        raise ValueError("uncertainty=True needs mode='socket' (i-PI cannot checkpoint an <ffcommittee> "
                         "around the in-process <ffdirect>)")
    devices = [device] if isinstance(device, str) else list(device)
    directory = Path(directory)
    if (directory / f"{OUTPUT_PREFIX}.out").exists():
        raise FileExistsError(f"{directory} already holds an i-PI run; choose another directory")
    label = model_label(model)
    if isinstance(model, CACE):
        loaded = model
    else:
        model = resolve_model_path(model).resolve()  # ModelFileError names the available models
        loaded = load_model(model)
    species_indices(atoms.numbers, loaded.config.elements)  # UnsupportedElementError before anything starts
    if max_uncertainty is not None and loaded.n_heads < 2:
        raise ValueError(f"max_uncertainty: model {label!r} has a single readout head and carries no force "
                         "uncertainty: use a model trained with n_heads > 1")
    if uncertainty:
        require_committee(loaded, label)  # one line naming the model, before anything starts
    std = standardize(atoms)
    directory.mkdir(parents=True, exist_ok=True)
    model_path = save_model(model, directory / "model.pt").resolve() if isinstance(model, CACE) else model

    if mode == "inprocess":
        ff = inprocess_forcefield_xml(model_path=model_path, template_path=directory / "structure.extxyz",
                                      device=devices[0], dtype=dtype, batch_size=cfg.beads)
        commands, socket_file = [], None
        env = None if not threads else {**os.environ, "OMP_NUM_THREADS": str(int(threads))}
    else:
        name = f"cace-{os.getpid()}-{secrets.token_hex(4)}"
        ff = socket_forcefield_xml(unix=name, symbols="".join(std.get_chemical_symbols()), pbc=std.pbc,
                                   batch_size=_socket_batch(cfg.beads, drivers), committee=uncertainty,
                                   name=MEMBERS_NAME if uncertainty else FORCEFIELD_NAME)
        socket_file = DEFAULT_SOCKETS_PREFIX + name
        commands, env = [], None
        for k in range(drivers):
            cmd = [sys.executable, "-m", "cace_calc.cli", "ipi", "--model", str(model_path), "--unix", name,
                   "--template", "structure.extxyz", "--device", devices[k % len(devices)],
                   "--dtype", dtype, "--wait", "60"]
            if threads:
                cmd += ["--threads", str(int(threads))]
            if uncertainty:
                cmd += ["--committee", "--uncertainty-log", uncertainty_log_name(k, drivers)]
            if max_uncertainty is not None:
                cmd += ["--max-uncertainty", repr(float(max_uncertainty))]
            commands.append(cmd)
    if uncertainty:  # alpha: the calibration factor of the members' force spread
        ff = committee_forcefield_xml(ff, alpha=float(loaded.uncertainty_scale[2]))
    # a stop may reach i-PI mid-step (its EXIT monitor): then RESTART holds the last completed step
    write_pimd_input(std, directory, cfg, forcefield_xml=ff, committee=uncertainty,
                     safe_stride=1 if max_uncertainty is not None else None)
    follower = None
    if uncertainty:
        follower = EventFollower([directory / uncertainty_log_name(k, drivers) for k in range(drivers)],
                                 say or _say)
    run_ipi(directory, drivers=commands, socket_file=socket_file, total_steps=cfg.steps,
            progress=progress, timeout=timeout, env=env, on_poll=follower and follower.poll)
    results = read_pimd_results(directory)
    write(directory / "centroid.extxyz", results.read_trajectory(), format="extxyz")
    if uncertainty:
        write_committee_potentials(results, directory / "committee_pot.dat")
    if results.force_uncertainty is not None and results.force_uncertainty.stopped:
        write(directory / FINAL_FRAMES, read_restart_beads(directory / "RESTART"), format="extxyz")
        (directory / EXIT_FILE).unlink(missing_ok=True)  # the driver's: a restart here would stop at once
    return results


def uncertainty_log_name(driver: int, drivers: int) -> str:
    """The force-uncertainty log of driver ``driver`` of ``drivers``."""
    return "uncertainty.log" if drivers == 1 else f"uncertainty-{driver}.log"


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)  # keeps a progress bar intact


def write_committee_potentials(results: PIMDResults, path: str | os.PathLike) -> Path:
    """Write each member's bead-averaged potential energy (Hartree), one row per output step
    and one column per member, as ``i-pi-committee-reweight`` reads it (with an observable
    from ``simulation.out``, same rows). Returns the path."""
    pots = results.committee_potential_energy
    if pots is None:
        raise ValueError(f"{results.directory} holds no committee run (run with uncertainty=True)")
    path = Path(path)
    header = (f"bead-averaged potential energy of each of {pots.shape[1]} committee members (Hartree, "
              "i-PI's alpha applied), one row per row of simulation.out")
    np.savetxt(path, pots / HARTREE, fmt="%.10e", header=header)
    return path
