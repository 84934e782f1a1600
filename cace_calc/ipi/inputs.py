"""Write i-PI inputs for (path-integral) molecular dynamics: the XML and the start structure.

Files are written in i-PI's atomic units with ASE's constants, so that a structure goes
to i-PI and back to the driver unchanged. Outputs are requested in atomic units (read back
by :mod:`cace_calc.ipi.results`) except the trajectories, which i-PI writes as extended XYZ
in Angstrom that ASE reads directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from ase import Atoms, units

from .bridge import BOHR, HARTREE

FORCEFIELD_NAME = "cace"
MEMBERS_NAME = "cace-members"  # the force field inside <ffcommittee> that returns the members
COMMITTEE_OUTPUT = "committee"  # per-bead files simulation.committee_K: uncertainty, members
OUTPUT_PREFIX = "simulation"
THERMOSTATS = ("pile_l", "pile_g", "piglet", "svr", "langevin")


@dataclass
class PIMDSettings:
    """What to simulate. Units: K, fs, GPa.

    beads: number of path-integral replicas (1 = classical MD).
    temperature: K. steps: number of MD steps. timestep_fs: fs.
    pressure_gpa: ``None`` for NVT, else the external pressure of an isotropic NPT run (GPa).
    thermostat: ``"pile_l"`` (local PILE, the default), ``"pile_g"`` (global centroid
        thermostat), ``"piglet"`` (i-PI's ``nm_gle``; needs ``piglet``), ``"svr"`` or
        ``"langevin"`` (classical, beads=1).
    tau_fs: time constant of the (centroid) thermostat, fs. pile_lambda: PILE damping of the
        internal modes relative to critical (i-PI's default when ``None``).
    barostat_tau_fs: time constant of the NPT barostat, fs.
    piglet: ``(A, C)`` PIGLET matrices for this temperature and number of beads, as published
        on gle4md.org: A with shape (beads, n, n) in atomic units of frequency, C (same shape)
        in K.
    seed: random seed of i-PI (velocities, thermostats).
    properties_stride, trajectory_stride: output every that many steps.
    write_forces: also write the forces on each bead (eV/A) as trajectories.
    """

    beads: int = 32
    temperature: float = 300.0
    steps: int = 1000
    timestep_fs: float = 0.5
    pressure_gpa: float | None = None
    thermostat: str = "pile_l"
    tau_fs: float = 100.0
    pile_lambda: float | None = None
    barostat_tau_fs: float = 200.0
    piglet: tuple | None = None
    seed: int = 31415
    properties_stride: int = 1
    trajectory_stride: int = 10
    write_forces: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        for name in ("beads", "steps", "properties_stride", "trajectory_stride"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("temperature", "timestep_fs", "tau_fs", "barostat_tau_fs"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.pressure_gpa is not None and not np.isfinite(self.pressure_gpa):
            raise ValueError(f"pressure_gpa must be finite or None, got {self.pressure_gpa!r}")
        if self.thermostat not in THERMOSTATS:
            raise ValueError(f"thermostat must be one of {', '.join(THERMOSTATS)}; got {self.thermostat!r}")
        if self.thermostat in ("svr", "langevin") and self.beads > 1:
            raise ValueError(f"thermostat {self.thermostat!r} is for classical MD (beads=1); "
                             "use pile_l, pile_g or piglet for path integrals")
        if self.pile_lambda is not None and not self.pile_lambda > 0:
            raise ValueError(f"pile_lambda must be positive, got {self.pile_lambda!r}")
        if self.thermostat == "piglet":
            self._check_piglet()
        elif self.piglet is not None:
            raise ValueError("piglet matrices given but thermostat is not 'piglet'")

    def _check_piglet(self) -> None:
        if self.piglet is None or len(self.piglet) != 2:
            raise ValueError("thermostat='piglet' needs piglet=(A, C): the PIGLET matrices for "
                             f"{self.beads} beads at {self.temperature} K from gle4md.org "
                             "(A in atomic units, C in K); i-PI does not generate them")
        a, c = (np.asarray(m, dtype=float) for m in self.piglet)
        if a.ndim != 3 or a.shape[0] != self.beads or a.shape[1] != a.shape[2] or a.shape != c.shape:
            raise ValueError(f"piglet A and C must both have shape (beads={self.beads}, n, n); got "
                             f"{a.shape} and {c.shape}")


def standardize(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` in the cell orientation i-PI uses (a along x, b in the xy plane,
    i.e. a lower-triangular row cell), rotating positions with the cell when needed.
    A molecule without a cell gets a cubic box 20 A wider than it (not used for forces)."""
    atoms = atoms.copy()
    atoms.calc = None
    cell = atoms.cell.array
    if atoms.cell.rank < 3:
        if atoms.pbc.any():
            raise ValueError(f"i-PI needs a 3D cell; this structure has pbc={atoms.pbc.tolist()} "
                             f"but a cell of rank {atoms.cell.rank}")
        extent = np.ptp(atoms.positions, axis=0).max() if len(atoms) else 0.0
        atoms.cell = np.eye(3) * (extent + 20.0)
        atoms.center()
        return atoms
    if np.linalg.det(cell) <= 0:
        raise ValueError("the cell is left-handed (negative determinant); i-PI needs a right-handed "
                         "cell: reorder the cell vectors")
    if np.allclose(cell, np.tril(cell), rtol=0, atol=1e-12) and (np.diag(cell) > 0).all():
        return atoms
    rcell, _ = atoms.cell.standard_form()
    rotation = np.linalg.solve(cell, rcell)  # rcell = cell @ rotation
    atoms.positions = atoms.positions @ rotation
    atoms.cell = rcell
    return atoms


def write_ipi_structure(atoms: Atoms, path: str | os.PathLike) -> None:
    """Write ``atoms`` (already standardized) as i-PI XYZ in Bohr with its full cell matrix."""
    h = atoms.cell.array.T / BOHR  # i-PI: lattice vectors as columns
    lines = [str(len(atoms)),
             "# CELL(H): " + " ".join(f"{x:.15e}" for x in h.reshape(-1))
             + " cell{atomic_unit} positions{atomic_unit}"]
    for sym, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions / BOHR):
        lines.append(f"{sym:2s} {x:.15e} {y:.15e} {z:.15e}")
    Path(path).write_text("\n".join(lines) + "\n")


def _check_parameter_value(name: str, value) -> str:
    value = str(value)
    if any(c in value for c in ",{}\n") or value != value.strip() or not value:
        raise ValueError(f"{name} {value!r} cannot go into i-PI's <parameters>, which splits on "
                         "commas and braces: use a value (path) without , { } or surrounding spaces")
    return value


def _parameters(**pars) -> str:
    return "{" + ", ".join(f"{k}: {_check_parameter_value(k, v)}" for k, v in pars.items()) + "}"


def socket_forcefield_xml(*, unix: str | None = None, host: str | None = None, port: int | None = None,
                          symbols: str, pbc: np.ndarray, batch_size: int = 1, committee: bool = False,
                          name: str = FORCEFIELD_NAME) -> str:
    """An ``<ffsocket>`` block for CACE drivers at unix socket ``unix`` or at ``host:port``.
    Its parameters tell the drivers the elements (``symbols``) and periodicity, and with
    ``committee`` to send every readout head (for :func:`committee_forcefield_xml`)."""
    if (unix is None) == (host is None):
        raise ValueError("give exactly one of unix=NAME or host=HOST (with port=N)")
    mode = "unix" if unix is not None else "inet"
    address = unix if unix is not None else host
    pbc_text = "".join("T" if p else "F" for p in np.broadcast_to(pbc, (3,)))
    pars = {"symbols": symbols, "pbc": pbc_text, **({"committee": "true"} if committee else {})}
    lines = [f"<ffsocket name='{escape(name)}' mode='{mode}' pbc='false'>",
             f"  <address>{escape(address)}</address>"]
    if mode == "inet":
        lines.append(f"  <port>{int(port)}</port>")
    lines += ["  <latency>1e-4</latency>",
              f"  <parameters>{escape(_parameters(**pars))}</parameters>"]
    if batch_size > 1:
        lines.append(f"  <batch_size>{int(batch_size)}</batch_size>")
    lines.append("</ffsocket>")
    return "\n".join(lines)


def inprocess_forcefield_xml(*, model_path: str | os.PathLike, template_path: str | os.PathLike,
                             device: str = "auto", dtype: str = "float64", batch_size: int = 1) -> str:
    """An ``<ffdirect>`` block running :class:`cace_calc.ipi.inprocess.CACEPES` inside i-PI,
    evaluating ``batch_size`` structures (use the number of beads) per model call."""
    pes_path = Path(__file__).with_name("inprocess.py").resolve()
    pars = _parameters(model=Path(model_path).resolve(), template=Path(template_path).resolve(),
                       device=device, dtype=dtype)
    return "\n".join([
        f"<ffdirect name='{FORCEFIELD_NAME}' pbc='false' threaded='true'>",
        "  <pes>custom</pes>",
        f"  <pes_path>{escape(str(pes_path))}</pes_path>",
        f"  <parameters>{escape(pars)}</parameters>",
        f"  <batch_size>{int(batch_size)}</batch_size>",
        "</ffdirect>"])


def committee_forcefield_xml(members_xml: str, *, alpha: float = 1.0) -> str:
    """i-PI's ``<ffcommittee>`` around one force field that returns all members in its JSON
    extras (``<parse_json>``): a block from :func:`socket_forcefield_xml` with
    ``committee=True, name=MEMBERS_NAME``. (Not around ``<ffdirect>``: i-PI 3.3 fails to
    write the checkpoint of such a committee.)

    i-PI drives the dynamics with the members' mean and rescales each member's deviation from
    the mean by ``alpha`` (its calibration of the spread; use the model's
    ``uncertainty_scale[2]``, the factor of the members' force spread). Its extras then hold
    the rescaled ``committee_pot`` (Hartree), ``committee_force``, ``committee_virial`` and
    ``committee_uncertainty``, the sample standard deviation (ddof=1) of the rescaled
    energies (Hartree).
    """
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    return "\n".join([
        f"<ffcommittee name='{FORCEFIELD_NAME}' pbc='false'>",
        f"  <alpha>{float(alpha)!r}</alpha>",
        "  <parse_json>true</parse_json>",
        _indent(members_xml, 2),
        "</ffcommittee>"])


def _thermostat_xml(s: PIMDSettings) -> str:
    if s.thermostat == "piglet":
        a, c = (np.asarray(m, dtype=float) for m in s.piglet)
        shape = "(" + ",".join(str(n) for n in a.shape) + ")"
        return "\n".join([
            "<thermostat mode='nm_gle'>",
            f"  <A shape='{shape}'> [ {', '.join(f'{x:.12e}' for x in a.reshape(-1))} ] </A>",
            f"  <C shape='{shape}' units='kelvin'> [ {', '.join(f'{x:.12e}' for x in c.reshape(-1))} ] </C>",
            "</thermostat>"])
    lam = "" if s.pile_lambda is None or not s.thermostat.startswith("pile") else \
        f"\n  <pile_lambda>{s.pile_lambda}</pile_lambda>"
    return (f"<thermostat mode='{s.thermostat}'>\n  <tau units='femtosecond'>{s.tau_fs}</tau>{lam}\n"
            "</thermostat>")


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def simulation_xml(settings: PIMDSettings, *, structure_file: str, forcefield_xml: str,
                   elements: list[str], committee: bool = False, safe_stride: int | None = None) -> str:
    """The full i-PI input for ``settings`` (see :func:`write_pimd_input`)."""
    s = settings
    props = ["step", "time{picosecond}", "conserved", "temperature{kelvin}", "potential",
             "kinetic_cv"] + [f"kinetic_cv({e})" for e in elements] + [
             "pressure_cv", "volume", "virial_cv", "bead_potentials"]
    what = {"pos": "positions", "xc": "x_centroid"}
    if s.write_forces:
        what["for"] = "forces"
    trajs = [f"<trajectory filename='{name}' stride='{s.trajectory_stride}' format='ase' cell_units='ase'> "
             f"{quantity}{{ase}} </trajectory>" for name, quantity in what.items()]
    if committee:  # per bead, with the properties: i-PI's uncertainty, then the K members (Hartree)
        trajs.append(f"<trajectory filename='{COMMITTEE_OUTPUT}' stride='{s.properties_stride}' "
                     "extra_type='committee_uncertainty,committee_pot'> extras </trajectory>")
    npt = s.pressure_gpa is not None
    if npt:
        dynamics = "\n".join([
            "<dynamics mode='npt'>",
            f"  <timestep units='femtosecond'>{s.timestep_fs}</timestep>",
            "  <barostat mode='isotropic'>",
            f"    <tau units='femtosecond'>{s.barostat_tau_fs}</tau>",
            f"    <thermostat mode='langevin'><tau units='femtosecond'>{s.tau_fs}</tau></thermostat>",
            "  </barostat>",
            _indent(_thermostat_xml(s), 2),
            "</dynamics>"])
        p_au = s.pressure_gpa * units.GPa * BOHR**3 / HARTREE  # ASE's constants, as for the outputs
        pressure = f"\n      <pressure units='atomic_unit'>{p_au:.15e}</pressure>"
    else:
        dynamics = "\n".join([
            "<dynamics mode='nvt'>",
            f"  <timestep units='femtosecond'>{s.timestep_fs}</timestep>",
            _indent(_thermostat_xml(s), 2),
            "</dynamics>"])
        pressure = ""
    safe = max(s.steps, 1) if safe_stride is None else int(safe_stride)
    return f"""<simulation verbosity='low' safe_stride='{safe}'>
  <output prefix='{OUTPUT_PREFIX}'>
    <properties stride='{s.properties_stride}' filename='out' flush='1'> [ {', '.join(props)} ] </properties>
{_indent(chr(10).join(trajs), 4)}
    <checkpoint stride='{max(s.steps, 1)}'/>
  </output>
  <total_steps>{s.steps}</total_steps>
  <prng><seed>{s.seed}</seed></prng>
{_indent(forcefield_xml, 2)}
  <system>
    <initialize nbeads='{s.beads}'>
      <file mode='xyz'>{escape(structure_file)}</file>
      <velocities mode='thermal' units='kelvin'>{s.temperature}</velocities>
    </initialize>
    <forces><force forcefield='{FORCEFIELD_NAME}'/></forces>
    <ensemble>
      <temperature units='kelvin'>{s.temperature}</temperature>{pressure}
    </ensemble>
    <motion mode='dynamics'>
{_indent(dynamics, 6)}
    </motion>
  </system>
</simulation>
"""


def write_pimd_input(atoms: Atoms, directory: str | os.PathLike, settings: PIMDSettings, *,
                     forcefield_xml: str, committee: bool = False, safe_stride: int | None = None) -> Path:
    """Write ``input.xml``, ``init.xyz`` (i-PI's start structure, Bohr) and ``structure.extxyz``
    (the same structure for ASE and drivers, Angstrom) to ``directory``; return the XML path.

    ``atoms`` is first rotated into i-PI's cell orientation (see :func:`standardize`);
    ``forcefield_xml`` comes from :func:`socket_forcefield_xml` or
    :func:`inprocess_forcefield_xml`, or for a committee from :func:`committee_forcefield_xml`
    (then pass ``committee=True``: i-PI also writes ``simulation.committee_K``, bead K's
    committee uncertainty and members' energies in Hartree at every properties output).
    ``safe_stride``: every that many steps i-PI keeps the state it falls back to when a soft exit
    (an ``EXIT`` file, a signal) interrupts a step and writes to ``RESTART`` (default: the run
    length, i.e. the start; 1 keeps the last completed step, for runs that may be stopped).
    """
    settings.validate()
    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise ValueError("atoms must be a non-empty ase.Atoms")
    if settings.pressure_gpa is not None and not atoms.pbc.all():
        raise ValueError(f"NPT (pressure_gpa set) needs a cell periodic in all directions; pbc={atoms.pbc.tolist()}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    std = standardize(atoms)
    write_ipi_structure(std, directory / "init.xyz")
    std.write(directory / "structure.extxyz", format="extxyz")
    elements = sorted(set(std.get_chemical_symbols()), key=std.get_chemical_symbols().index)
    xml = simulation_xml(settings, structure_file="init.xyz", forcefield_xml=forcefield_xml,
                         elements=elements, committee=committee, safe_stride=safe_stride)
    path = directory / "input.xml"
    path.write_text(xml)
    return path
