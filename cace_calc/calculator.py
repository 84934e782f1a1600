"""ASE calculator for CACE models."""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .checkpoint import load_model
from .errors import CalculationFailed, PropertyNotImplementedError
from .graph import NeighbourCache, build_graph
from .model import CACE

ASE_CALCULATOR_ARGUMENTS = ("restart", "ignore_bad_restart_file", "label", "atoms", "directory")
UNCERTAINTY_RESULTS = ("energy_uncertainty", "energies_uncertainty", "forces_uncertainty")
NEIGHBOUR_SKIN = 0.5  # A, of the Verlet list kept between calls
MEMBER_RESULTS = ("energy_members", "forces_members", "stress_members", "stress_uncertainty")
_DTYPES = {"float32": torch.float32, "float64": torch.float64,
           torch.float32: torch.float32, torch.float64: torch.float64}


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={str(device)!r} is not a device: use cpu, cuda, cuda:1 or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but CUDA is not available")
    if device.type == "meta":
        raise ValueError("device='meta' holds no data; use cpu, cuda, cuda:1 or auto")
    if device.type != "cpu":
        try:  # a device torch knows but this machine lacks (mps, cuda:7, ...)
            torch.empty(0, device=device)
        except Exception as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
            raise ValueError(f"device={str(device)!r} is not usable here: {reason}") from None
    return device


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """torch dtype from ``"float32"``/``"float64"`` or a torch dtype."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return _DTYPES[dtype]


class CACECalculator(Calculator):
    """ASE calculator for a CACE potential.

    Parameters
    ----------
    model: a pretrained model name (see :func:`cace_calc.available_models`), a model file path,
        or a loaded :class:`cace_calc.CACE`.
    device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype: ``"float64"`` (default; use for phonons, elastic constants, relaxations) or
        ``"float32"`` (faster MD).
    compile: compile the symmetriser, the edge basis and the edge sums into fused kernels
        (:meth:`CACE.use_compiled_kernels`): faster for long MD, same numbers; the first call
        compiles for seconds to a minute.
    uncertainty: for models that carry one (several readout heads): ``True`` adds calibrated
        one-sigma uncertainties to the results at little cost: ``energy_uncertainty`` (eV, of
        the total energy) and ``energies_uncertainty`` (eV, per atom), from the prediction
        rigidity of the readout's last layer, and ``forces_uncertainty`` ((N,), eV/A, of each
        Cartesian component of the atom's force, estimated from the heads' spread of the
        per-atom energies around it and the atom's force). ``"members"`` runs one backward pass per
        head (about K times the cost of the forces) and adds every member's results
        (``energy_members`` (K,), ``forces_members`` (K, N, 3), ``stress_members`` (K, 6)), with
        ``forces_uncertainty`` and ``stress_uncertainty`` (6,) from the members' spread.

    Results, in ASE units and signs: ``energy`` and ``free_energy`` (eV, E0 included),
    ``energies`` (eV per atom, summing to the energy), ``forces`` (eV/A, (N, 3)) and, for
    cells periodic in all three directions, ``stress`` (eV/A^3, Voigt order xx yy zz yz xz xy,
    positive is tensile). All results come from one forward and one backward pass; they are
    recomputed only when the atoms change. Between calls on one structure (MD, relaxations) the
    calculator keeps a Verlet neighbour list within the cutoff plus a 0.5 A skin and rebuilds it
    only when an atom has moved more than 0.25 A, or the cell or the atoms changed: the edges,
    and so the results, are those of a fresh list.

    Threads: one calculator may be shared by several threads. ASE keeps the last structure and
    its results on the calculator (``self.atoms``, ``self.results``), so each property request
    (check the atoms, compute, read the result) and each :meth:`calculate_batch` holds a lock:
    every thread gets its own structure's results, and the calls run one at a time (torch
    already uses all cores within one call). For parallel evaluation on several devices, give
    each thread its own calculator.
    """

    implemented_properties = ("energy", "free_energy", "energies", "forces", "stress",
                              *UNCERTAINTY_RESULTS, *MEMBER_RESULTS)

    def __init__(self, model: str | os.PathLike | CACE, *, device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "float64", compile: bool = False, uncertainty: bool | str = False,
                 **kwargs):
        unknown = sorted(set(kwargs) - set(ASE_CALCULATOR_ARGUMENTS))
        if unknown:
            raise TypeError(f"CACECalculator got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                            "it takes model, device, dtype, compile, uncertainty and ASE's "
                            f"{', '.join(ASE_CALCULATOR_ARGUMENTS)}")
        if uncertainty not in (False, True, "members"):
            raise ValueError(f"uncertainty must be False, True or 'members', got {uncertainty!r}")
        super().__init__(**kwargs)
        label = (getattr(model, "metadata", {}) or {}).get("name", "given") if isinstance(model, CACE) else str(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        if isinstance(model, CACE):
            param = next(model.parameters())
            if param.dtype != self.dtype or param.device != self.device or compile:
                model = copy.deepcopy(model)  # leave the caller's model as it was
            model = model.to(device=self.device, dtype=self.dtype).eval()
        else:
            model = load_model(model, device=self.device, dtype=self.dtype)
        if compile:
            model.use_compiled_kernels()
        if uncertainty and model.n_heads < 2:
            raise ValueError(f"model {label!r} carries no "
                             "uncertainty (one readout head; converted original models never do): use a model "
                             "trained with model.n_heads > 1, such as the pretrained water and nbmotaw")
        self.uncertainty = uncertainty
        self.model = model
        self._lock = threading.RLock()
        # a Verlet list kept between calls on one structure (MD, relaxations): rebuilt when an atom
        # has moved more than half the skin or the cell or the atoms changed; the same edges
        self.neighbours = NeighbourCache(model.cutoff, skin=NEIGHBOUR_SKIN)

    def __getstate__(self):  # copy.deepcopy and pickle: a lock cannot be copied, make a new one
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def get_property(self, name, atoms=None, allow_calculation=True):
        """ASE's get_property, atomic with respect to other threads using this calculator."""
        with self._lock:
            return super().get_property(name, atoms, allow_calculation)

    def _evaluate(self, images: Sequence[Atoms], *, stress: bool,
                  neighbours: NeighbourCache | None = None) -> dict[str, np.ndarray]:
        graph = build_graph(images, self.model.config.elements, self.model.cutoff, device=self.device,
                            neighbours=neighbours)
        out = self.model(graph, forces=True, stress=stress, uncertainty=bool(self.uncertainty),
                         members=self.uncertainty == "members")
        out.pop("forces_uncertainty_estimate", None)
        out = {k: v.to("cpu", torch.float64).numpy() for k, v in out.items()}
        if stress:  # only fully periodic structures have a stress; drop the others' values
            open_cells = ~graph.pbc.all(dim=1).cpu().numpy()
            out["stress"][open_cells] = 0.0
            if "stress_members" in out:
                out["stress_members"][:, open_cells] = 0.0
                out["stress_uncertainty"][open_cells] = 0.0
        for k, v in out.items():
            if not np.isfinite(v).all():
                bad = [n for n, t in self.model.state_dict().items()
                       if t.is_floating_point() and not torch.isfinite(t).all()]
                cause = (f"its parameters hold NaN or inf ({', '.join(bad[:3])})" if bad
                         else "are two atoms on top of each other?")
                raise CalculationFailed(f"the model returned non-finite {k}; {cause}")
        return out

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Fill ``self.results`` for ``atoms`` (see the class docstring for units)."""
        with self._lock:
            self._calculate(atoms, properties, system_changes)

    def _calculate(self, atoms, properties, system_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(self.atoms.pbc.all())
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError(
                f"stress needs a cell periodic in all directions; this one has pbc={self.atoms.pbc.tolist()}")
        out = self._evaluate([self.atoms], stress=periodic, neighbours=self.neighbours)
        self.results = _results_of(out, 0, np.arange(len(self.atoms)), periodic)

    def calculate_batch(self, images: Sequence[Atoms], *, max_atoms: int = 20000) -> list[dict[str, np.ndarray]]:
        """Evaluate many structures, batched ``max_atoms`` atoms at a time.

        Returns one dict per structure with ``energy``, ``free_energy``, ``energies``,
        ``forces`` and, for fully periodic cells, ``stress`` (same units as :meth:`calculate`).
        Does not touch this calculator's cached results.
        """
        with self._lock:
            return self._calculate_batch(list(images), max_atoms)

    def _calculate_batch(self, images: list[Atoms], max_atoms: int) -> list[dict[str, np.ndarray]]:
        results: list[dict] = []
        start = 0
        while start < len(images):
            stop, n = start, 0
            while stop < len(images) and (stop == start or n + len(images[stop]) <= max_atoms):
                n += len(images[stop])
                stop += 1
            chunk = images[start:stop]
            periodic = [bool(a.pbc.all()) for a in chunk]
            out = self._evaluate(chunk, stress=any(periodic))
            offset = 0
            for g, atoms in enumerate(chunk):
                idx = np.arange(offset, offset + len(atoms))
                results.append(_results_of(out, g, idx, periodic[g]))
                offset += len(atoms)
            start = stop
        return results


def _results_of(out: dict[str, np.ndarray], g: int, atom_index: np.ndarray, periodic: bool) -> dict:
    energy = float(out["energy"][g])
    res = {"energy": energy, "free_energy": energy, "energies": out["energies"][atom_index].copy(),
           "forces": out["forces"][atom_index].copy()}
    if periodic:
        res["stress"] = full_3x3_to_voigt_6_stress(out["stress"][g])
    if "energy_uncertainty" in out:
        res["energy_uncertainty"] = float(out["energy_uncertainty"][g])
        res["energies_uncertainty"] = out["energies_uncertainty"][atom_index].copy()
        res["forces_uncertainty"] = out["forces_uncertainty"][atom_index].copy()
    if "forces_members" in out:
        res["energy_members"] = out["energy_members"][g].copy()
        res["forces_members"] = out["forces_members"][:, atom_index].copy()
        if periodic:
            res["stress_members"] = full_3x3_to_voigt_6_stress(out["stress_members"][:, g])
            res["stress_uncertainty"] = full_3x3_to_voigt_6_stress(out["stress_uncertainty"][g])
    return res
