"""Training data: labelled structures read from extended XYZ, checked, with neighbour lists
computed once, and batched into :class:`~cace_calc.graph.Graph` objects with their targets.

Units: energy eV, forces eV/A, stress eV/A^3 with ASE's sign (positive is tensile).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from ..graph import Graph, check_atoms, neighbour_list, species_indices


class DataError(ValueError):
    """Training data that cannot be used: missing labels, unknown elements, NaN values."""


@dataclass
class Frame:
    """One labelled structure with its neighbour list (all NumPy, float64)."""

    positions: np.ndarray
    species: np.ndarray
    receivers: np.ndarray
    senders: np.ndarray
    shifts: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None  # [3, 3] or None
    numbers: np.ndarray
    weight: float = 1.0  # scales this structure's loss terms
    energy_weight: float | None = None  # scales its energy term instead, when given

    @property
    def n_atoms(self) -> int:
        return len(self.species)


def read_structures(path: str | os.PathLike, index: str = ":") -> list[Atoms]:
    """Structures from an (extended) XYZ file or any file ASE reads; raises DataError if none."""
    from ase.io import read

    if not os.path.isfile(path):
        from ..data import development_data_hint

        raise DataError(f"data file {str(path)!r} does not exist{development_data_hint(path)}")
    if os.path.getsize(path) == 0:
        raise DataError(f"no structures in {str(path)!r}: the file is empty")
    try:
        images = read(path, index)
    except Exception as e:  # ASE raises many kinds for a file it cannot parse
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot read {str(path)!r}: {reason}") from None
    images = images if isinstance(images, list) else [images]
    if not images:
        raise DataError(f"no structures in {str(path)!r}")
    return images


def labels_of(atoms: Atoms, where: str, *, stress: bool,
              stress_optional: bool = False) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Energy (eV), forces (eV/A) and, if asked, the 3x3 stress (eV/A^3) stored with ``atoms``
    (found as :func:`cace_calc.evaluate.reference_labels` finds them); DataError if one is
    missing, misshapen or not finite. ``stress_optional``: a structure without a stress label
    gives None (it enters no stress term), and so does one not periodic in all directions."""
    from ..evaluate import reference_labels

    try:
        labels = reference_labels(atoms)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    if stress and stress_optional and ("stress" not in labels or not atoms.pbc.all()):
        stress = False
    for key in ("energy", "forces") + (("stress",) if stress else ()):
        if key not in labels:
            hint = (" (set the stress weight to 0 or give stress for every frame)" if key == "stress" else "")
            raise DataError(f"{where} has no {key} label{hint}")
    if stress and not atoms.pbc.all():
        raise DataError(f"{where} has a stress label but is not periodic in all directions")
    sigma = labels["stress"] if stress else None
    values = [labels["energy"], labels["forces"]] + ([sigma] if stress else [])
    if not all(np.isfinite(v).all() for v in values):
        raise DataError(f"{where} has NaN or infinite labels")
    return labels["energy"], labels["forces"], sigma


def make_frames(images: Sequence[Atoms], elements: Sequence[int], cutoff: float, *,
                stress: bool, source: str = "data", weight: float = 1.0,
                energy_weight: float | None = None, stress_optional: bool = False) -> list[Frame]:
    """Check every structure and its labels, and compute its neighbour list within ``cutoff`` (A);
    ``weight`` scales the structures' loss terms in training (``energy_weight`` its energy term,
    when given); ``stress_optional`` accepts structures without a stress label."""
    frames = []
    for k, atoms in enumerate(images):
        where = f"{source}, structure {k}"
        try:
            check_atoms(atoms)
            species = species_indices(atoms.numbers, elements)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        energy, forces, sigma = labels_of(atoms, where, stress=stress, stress_optional=stress_optional)
        r, s, sh = neighbour_list(atoms, cutoff)
        frames.append(Frame(positions=np.array(atoms.positions, dtype=np.float64), species=species,
                            receivers=r, senders=s, shifts=sh, cell=np.array(atoms.cell.array),
                            pbc=np.array(atoms.pbc), energy=energy, forces=forces, stress=sigma,
                            numbers=np.array(atoms.numbers), weight=weight, energy_weight=energy_weight))
    return frames


def elements_in(images: Sequence[Atoms]) -> list[int]:
    """Sorted atomic numbers present in ``images``."""
    return sorted({int(z) for a in images for z in np.unique(a.numbers)})


def split_indices(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into (train, validation) index arrays."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, round(valid_fraction * n))
    if n_valid >= n:
        raise DataError(f"{n} structures are too few to split off a validation set")
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def fit_e0(frames: Sequence[Frame], n_elements: int) -> np.ndarray:
    """Per-element reference energies (eV) by least squares of total energy on element counts."""
    counts = np.stack([np.bincount(f.species, minlength=n_elements) for f in frames]).astype(np.float64)
    energies = np.array([f.energy for f in frames])
    present = counts.sum(axis=0) > 0
    e0 = np.zeros(n_elements)
    # rcond=None: minimum-norm solution when the counts are collinear (e.g. fixed composition)
    e0[present] = np.linalg.lstsq(counts[:, present], energies, rcond=None)[0]
    return e0


def shortest_distances(frames: Sequence[Frame], n_elements: int) -> np.ndarray:
    """Shortest distance (A) between atoms of each pair of element indices [nz, nz] within the
    frames' cutoff; inf for pairs that never meet."""
    d_min = np.full((n_elements, n_elements), np.inf)
    for f in frames:
        if not len(f.receivers):
            continue
        d = np.linalg.norm(f.positions[f.receivers] - f.positions[f.senders] + f.shifts, axis=1)
        np.minimum.at(d_min, (f.species[f.receivers], f.species[f.senders]), d)
    return np.minimum(d_min, d_min.T)


ZBL_MARGIN = 0.95  # the ZBL core switches off at 95 % of each pair's shortest distance in the data


def zbl_radii_from(frames: Sequence[Frame], n_elements: int) -> list[list[float]]:
    """Outer radii of the ZBL core per element pair (A): ZBL_MARGIN times the pair's shortest
    distance in ``frames``; pairs that never meet get the smallest of those radii."""
    d_min = shortest_distances(frames, n_elements)
    if not np.isfinite(d_min).any():
        raise DataError("no two atoms within the cutoff in the training data: cannot place the ZBL core "
                        "(set model.zbl_radii to null or to radii)")
    radii = ZBL_MARGIN * d_min
    radii[~np.isfinite(radii)] = radii[np.isfinite(radii)].min()
    return np.round(radii, 4).tolist()


def mean_neighbours(frames: Sequence[Frame]) -> float:
    """Average number of neighbours per atom within the cutoff."""
    return float(sum(len(f.receivers) for f in frames) / max(1, sum(f.n_atoms for f in frames)))


@dataclass
class Batch:
    """A batched graph and its targets as torch tensors (float64, CPU until moved)."""

    graph: Graph
    energy: torch.Tensor  # [G] eV
    n_atoms: torch.Tensor  # [G]
    forces: torch.Tensor  # [N, 3] eV/A
    stress: torch.Tensor | None  # [G, 3, 3] eV/A^3
    has_stress: torch.Tensor  # [G] bool
    weight: torch.Tensor  # [G] loss weight of each structure
    energy_weight: torch.Tensor | None = None  # [G] of its energy term (default: weight)

    def to(self, device) -> Batch:
        return Batch(graph=self.graph.to(device=device), energy=self.energy.to(device),
                     n_atoms=self.n_atoms.to(device), forces=self.forces.to(device),
                     stress=None if self.stress is None else self.stress.to(device),
                     has_stress=self.has_stress.to(device), weight=self.weight.to(device),
                     energy_weight=None if self.energy_weight is None else self.energy_weight.to(device))


def collate(frames: Sequence[Frame]) -> Batch:
    """Concatenate frames into one :class:`Batch` (atom indices offset per frame)."""
    offsets = np.cumsum([0] + [f.n_atoms for f in frames[:-1]])
    t = torch.from_numpy
    graph = Graph(
        positions=t(np.concatenate([f.positions for f in frames])),
        species=t(np.concatenate([f.species for f in frames])),
        receivers=t(np.concatenate([f.receivers + o for f, o in zip(frames, offsets)])),
        senders=t(np.concatenate([f.senders + o for f, o in zip(frames, offsets)])),
        shifts=t(np.concatenate([f.shifts for f in frames])),
        cell=t(np.stack([f.cell for f in frames])),
        pbc=t(np.stack([f.pbc for f in frames])),
        batch=t(np.concatenate([np.full(f.n_atoms, g) for g, f in enumerate(frames)])),
        n_graphs=len(frames),
    )
    has_stress = np.array([f.stress is not None for f in frames])
    stress = None
    if has_stress.any():
        stress = t(np.stack([f.stress if f.stress is not None else np.zeros((3, 3)) for f in frames]))
    return Batch(graph=graph, energy=torch.tensor([f.energy for f in frames], dtype=torch.float64),
                 n_atoms=torch.tensor([f.n_atoms for f in frames]),
                 forces=t(np.concatenate([f.forces for f in frames])), stress=stress,
                 has_stress=t(has_stress),
                 weight=torch.tensor([f.weight for f in frames], dtype=torch.float64),
                 energy_weight=torch.tensor([f.weight if f.energy_weight is None else f.energy_weight for f in frames],
                                            dtype=torch.float64))


def batches(frames: Sequence[Frame], batch_size: int, *, shuffle: bool,
            rng: np.random.Generator | None = None) -> list[Batch]:
    """Frames grouped ``batch_size`` at a time (shuffled with ``rng`` when asked)."""
    order = rng.permutation(len(frames)) if shuffle else np.arange(len(frames))
    return [collate([frames[i] for i in order[k:k + batch_size]]) for k in range(0, len(order), batch_size)]


def describe(frames: Sequence[Frame]) -> str:
    """One line: structures, atoms and elements."""
    zs = sorted({int(z) for f in frames for z in np.unique(f.numbers)})
    return (f"{len(frames)} structures, {sum(f.n_atoms for f in frames)} atoms, elements "
            f"{' '.join(chemical_symbols[z] for z in zs)}")
