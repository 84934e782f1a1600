"""Molecular dynamics with ASE: Langevin NVT or isotropic MTK NPT, with progress, a log and
a trajectory.

Units: temperature K, time step fs, pressure GPa, friction 1/fs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units


@dataclass
class MDResult:
    """What :func:`run_md` returns: the final structure (with the calculator attached) and
    averages over the samples taken every ``log_every`` steps, step 0 included: temperature (K),
    potential energy (eV); the wall time per step (ms) and the files written (None without
    ``out_dir``)."""

    atoms: Atoms
    steps: int
    temperature_mean_k: float
    potential_energy_mean_ev: float
    ms_per_step: float
    log_file: Path | None
    trajectory_file: Path | None
    max_force_uncertainty: float | None = None  # eV/A, largest per-atom sigma of the run (models with heads)
    uncertainty_events: list[str] = field(default_factory=list)  # the threshold warning, the stop
    stopped_at_step: int | None = None  # set when max_uncertainty stopped the run


class _UncertaintyStop(Exception):
    pass


class UncertaintyGuard:
    """Watches ``forces_uncertainty`` (eV/A) of a calculator after every MD step: keeps the
    largest, reports once when it passes ``threshold`` (with the step and the atom) and stops
    the run when it passes ``stop_above``."""

    def __init__(self, atoms: Atoms, dyn, threshold: float | None, stop_above: float | None, say):
        self.atoms, self.dyn, self.threshold, self.stop_above, self.say = atoms, dyn, threshold, stop_above, say
        self.largest = 0.0
        self.events: list[str] = []
        self.warned = False

    def __call__(self):
        sigma = self.atoms.calc.results.get("forces_uncertainty")
        if sigma is None:
            return
        atom = int(np.argmax(sigma))
        value = float(sigma[atom])
        self.largest = max(self.largest, value)
        where = (f"step {self.dyn.nsteps}: force uncertainty {value:.3f} eV/A on atom {atom} "
                 f"({self.atoms[atom].symbol})")
        if self.threshold is not None and value > self.threshold and not self.warned:
            self.warned = True
            self.events.append(f"{where} passed the model's threshold {self.threshold:.3f} eV/A: the model is "
                               "outside its training data here")
            self.say(self.events[-1])
        if self.stop_above is not None and value > self.stop_above:
            self.events.append(f"{where} passed --max-uncertainty {self.stop_above:g} eV/A: stopped")
            self.say(self.events[-1])
            raise _UncertaintyStop


def run_md(atoms: Atoms, calc, *, temperature: float = 300.0, steps: int = 1000, timestep: float = 0.5,
           ensemble: str = "nvt", pressure: float = 0.0, friction: float = 0.01, tdamp: float = 100.0,
           pdamp: float = 1000.0, out_dir: str | os.PathLike | None = None, log_every: int = 10,
           traj_every: int = 100, seed: int = 0, progress: bool | None = None,
           max_uncertainty: float | None = None, say=None) -> MDResult:
    """Run MD from ``atoms`` (a copy; momenta drawn at ``temperature`` unless already set) with
    ``calc``, any ASE calculator (e.g. ``CACECalculator(model, dtype="float32")``).

    ensemble: ``"nvt"`` (Langevin, ``friction`` in 1/fs; the centre of mass is fixed unless
    ``atoms`` has constraints of its own, which are kept) or ``"npt"``
    (isotropic MTK barostat and thermostat, ``tdamp``/``pdamp`` in fs, ``pressure`` in GPa;
    needs a periodic cell). With ``out_dir``, writes ``md.log`` (ASE's MD log: time in ps,
    energies in eV, T in K, stress in GPa for periodic cells) every ``log_every`` steps and
    ``md.traj`` (ASE trajectory) every ``traj_every`` steps, overwriting earlier ones.
    ``seed`` seeds the initial velocities and the Langevin noise. Raises ``ValueError`` for bad
    settings, before any file is written.

    With a calculator that reports ``forces_uncertainty`` (``CACECalculator(...,
    uncertainty=True)``) every step is watched: the largest per-atom force sigma is kept, a
    message goes to ``say`` (default print) once when it passes the model's threshold (its
    metadata ``uncertainty.forces_threshold_ev_per_a``), and ``max_uncertainty`` (eV/A) stops
    the run with the last frame written to the trajectory.
    """
    from ase.constraints import FixCom
    from ase.md import MDLogger
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from tqdm import tqdm

    if steps < 0 or timestep <= 0 or temperature < 0:
        raise ValueError(f"need steps >= 0, timestep > 0 fs and temperature >= 0 K; got steps={steps}, "
                         f"timestep={timestep}, temperature={temperature}")
    if log_every < 1 or traj_every < 1:
        raise ValueError(f"log_every and traj_every must be at least 1, got {log_every} and {traj_every}")
    if ensemble not in ("nvt", "npt"):
        raise ValueError(f"ensemble must be 'nvt' or 'npt', got {ensemble!r}")
    if ensemble == "npt" and not atoms.pbc.all():
        raise ValueError(f"NPT needs a cell periodic in all three directions; this structure has "
                         f"pbc={atoms.pbc.tolist()} (use ensemble='nvt')")
    if max_uncertainty is not None and "forces_uncertainty" not in atoms_calc_results(calc, atoms):
        raise ValueError("max_uncertainty needs a calculator that reports forces_uncertainty "
                         "(CACECalculator(model, uncertainty=True) with a model that has several heads)")
    atoms = atoms.copy()
    atoms.calc = calc
    atoms.get_forces()  # fails here (unknown element, bad cell, ...) before any file is written
    rng = np.random.default_rng(seed)
    if not atoms.get_momenta().any() and temperature > 0:
        thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
    if ensemble == "nvt":
        from ase.md.langevin import Langevin

        if not atoms.constraints:
            atoms.set_constraint(FixCom())
        dyn = Langevin(atoms, timestep=timestep * units.fs, temperature_K=temperature,
                       friction=friction / units.fs, fixcm=False, rng=rng)
    else:
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        dyn = IsotropicMTKNPT(atoms, timestep=timestep * units.fs, temperature_K=temperature,
                              pressure_au=pressure * units.GPa, tdamp=tdamp * units.fs, pdamp=pdamp * units.fs)

    log_file = traj_file = None
    closers = []
    if out_dir is not None:
        from ase.io import Trajectory

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        log_file, traj_file = out / "md.log", out / "md.traj"
        logger = MDLogger(dyn, atoms, str(log_file), header=True, stress=bool(atoms.pbc.all()), peratom=False,
                          mode="w")
        closers.append(logger.close)
        dyn.attach(logger, interval=log_every)
        traj = Trajectory(str(traj_file), "w", atoms)
        closers.append(traj.close)
        dyn.attach(traj.write, interval=traj_every)
    temps, epots = [], []
    metadata = getattr(getattr(calc, "model", None), "metadata", {}) or {}
    threshold = (metadata.get("uncertainty") or {}).get("forces_threshold_ev_per_a")
    guard = UncertaintyGuard(atoms, dyn, threshold, max_uncertainty, say or (lambda msg: print(msg, flush=True)))
    dyn.attach(guard, interval=1)  # observers run at step 0 too
    stopped = None
    t0 = time.perf_counter()
    try:
        with tqdm(total=steps, unit="step", desc=f"MD {ensemble.upper()} {temperature:g} K",
                  disable=(not progress) if progress is not None else None) as bar:
            def record():
                temps.append(atoms.get_temperature())
                epots.append(atoms.get_potential_energy())
                bar.update(dyn.nsteps - bar.n)
                bar.set_postfix(T=f"{temps[-1]:.0f} K")

            dyn.attach(record, interval=log_every)
            try:
                dyn.run(steps)
            except _UncertaintyStop:
                stopped = dyn.nsteps
                if traj_file is not None:
                    traj.write()
    finally:
        for close in closers:
            close()
    wall = time.perf_counter() - t0
    done = steps if stopped is None else stopped
    if not temps:  # stopped before the first sample
        temps, epots = [atoms.get_temperature()], [atoms.get_potential_energy()]
    has_sigma = "forces_uncertainty" in atoms.calc.results
    return MDResult(atoms=atoms, steps=done, temperature_mean_k=float(np.mean(temps)),
                    potential_energy_mean_ev=float(np.mean(epots)), ms_per_step=1e3 * wall / max(1, done),
                    log_file=log_file, trajectory_file=traj_file,
                    max_force_uncertainty=guard.largest if has_sigma else None,
                    uncertainty_events=guard.events, stopped_at_step=stopped)


def atoms_calc_results(calc, atoms: Atoms) -> dict:
    """The results ``calc`` gives for ``atoms`` (a copy), computed now."""
    probe = atoms.copy()
    probe.calc = calc
    probe.get_forces()
    return dict(calc.results)
