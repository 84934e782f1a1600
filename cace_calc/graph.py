"""Atoms -> tensors: element indices, neighbour list (vesin) and batching of many structures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from .errors import InvalidAtomsError, UnsupportedElementError


@dataclass
class Graph:
    """One or several structures as flat tensors (cells are rows, as in ASE).

    positions [N, 3] (A); species [N] (index into the model's element list); receivers and
    senders [E] (edge e points from sender to receiver); shifts [E, 3] (A, Cartesian, so that
    r_e = x_receiver - x_sender + shift); cell [G, 3, 3] (A); pbc [G, 3]; batch [N] (structure
    of each atom); n_graphs = G.
    """

    positions: torch.Tensor
    species: torch.Tensor
    receivers: torch.Tensor
    senders: torch.Tensor
    shifts: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    n_graphs: int

    def to(self, device=None, dtype=None) -> Graph:
        """A copy on ``device`` with floating tensors in ``dtype``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device=device, dtype=dtype if v.is_floating_point() else None)
            out[f.name] = v
        return Graph(**out)


def species_indices(numbers: np.ndarray, elements: Sequence[int]) -> np.ndarray:
    """Map atomic numbers to positions in ``elements``; an unknown element raises
    :class:`UnsupportedElementError` naming it and the supported ones."""
    table = np.full(max(max(elements), int(np.max(numbers))) + 1, -1, dtype=np.int64)
    table[list(elements)] = np.arange(len(elements))
    idx = table[numbers]
    if (idx < 0).any():
        missing = sorted({chemical_symbols[z] for z in np.asarray(numbers)[idx < 0]})
        supported = ", ".join(chemical_symbols[z] for z in elements)
        raise UnsupportedElementError(
            f"element(s) {', '.join(missing)} not supported by this model; it knows: {supported}")
    return idx


def check_atoms(atoms: Atoms) -> None:
    """Raise :class:`InvalidAtomsError` for structures no model can evaluate."""
    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise InvalidAtomsError("atoms is empty: there is nothing to evaluate")
    pos = atoms.positions
    if not np.isfinite(pos).all():
        bad = np.where(~np.isfinite(pos).all(axis=1))[0]
        raise InvalidAtomsError(f"non-finite (NaN or inf) positions for atom(s) {bad[:10].tolist()}")
    cell = atoms.cell.array
    if not np.isfinite(cell).all():
        raise InvalidAtomsError("non-finite (NaN or inf) entries in the cell")
    pbc = atoms.pbc
    if pbc.any():
        lengths = np.linalg.norm(cell, axis=1)
        if (lengths[pbc] == 0).any():
            raise InvalidAtomsError(f"periodic direction(s) {np.where(pbc & (lengths == 0))[0].tolist()} "
                                    "have a zero cell vector")
        if pbc.all() and abs(np.linalg.det(cell)) < 1e-9:
            raise InvalidAtomsError("periodic cell has zero volume")


def neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list within ``cutoff`` (A), periodic images included, self-edges removed.

    Returns receivers [E] (sorted), senders [E] and Cartesian shifts [E, 3] such that
    r_e = x_receiver - x_sender + shift. Works for cells smaller than the cutoff, triclinic
    cells, mixed periodicity and isolated molecules.
    """
    import vesin

    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, shift_idx = nl.compute(atoms.positions, atoms.cell.array, atoms.pbc.tolist(), quantities="ijS")
    # vesin's vector is x_j - x_i + S @ cell. The list is full, so the edge i <- j with vector
    # x_i - x_j - S @ cell is in it too: take i as the receiver, so edges come sorted by receiver
    shifts = -(shift_idx.astype(np.float64) @ atoms.cell.array)
    return i.astype(np.int64), j.astype(np.int64), shifts


def build_graph(images: Sequence[Atoms], elements: Sequence[int], cutoff: float) -> Graph:
    """Batch ``images`` into one float64 CPU :class:`Graph` for a model with ``elements`` and
    ``cutoff`` (A). Move it with :meth:`Graph.to`."""
    if len(images) == 0:
        raise ValueError("images is empty: give at least one structure")
    pos, spec, recv, send, shifts, batch = [], [], [], [], [], []
    offset = 0
    for g, atoms in enumerate(images):
        check_atoms(atoms)
        spec.append(species_indices(atoms.numbers, elements))
        r, s, sh = neighbour_list(atoms, cutoff)
        recv.append(r + offset)
        send.append(s + offset)
        shifts.append(sh)
        pos.append(atoms.positions)
        batch.append(np.full(len(atoms), g, dtype=np.int64))
        offset += len(atoms)
    t = torch.from_numpy
    return Graph(
        positions=t(np.concatenate(pos)).to(torch.float64),
        species=t(np.concatenate(spec)),
        receivers=t(np.concatenate(recv)),
        senders=t(np.concatenate(send)),
        shifts=t(np.concatenate(shifts)).to(torch.float64),
        cell=t(np.stack([a.cell.array for a in images])).to(torch.float64),
        pbc=t(np.stack([a.pbc for a in images])),
        batch=t(np.concatenate(batch)),
        n_graphs=len(images),
    )
