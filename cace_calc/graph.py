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
        _periodic_measure(cell, pbc)


# Limits on a periodic cell, checked before its neighbour list is built: at most _MAX_IMAGES
# periodic images on each side in any direction (a height under 1 % of the cutoff: atoms closer
# than that to their own images are a mistake in the cell, not a structure), at most
# _MAX_IMAGE_CELLS image cells in all, and at most _MAX_PAIRS neighbour pairs expected from the
# density (192 water molecules within 6 A: ~1e4; 1e9 pairs would need tens of GB).
_MAX_IMAGES = 100
_MAX_IMAGE_CELLS = 1_000_000
_MAX_PAIRS = 1_000_000_000
_BALL = {1: 2.0, 2: np.pi, 3: 4.0 * np.pi / 3.0}  # measure of the unit ball in 1, 2, 3 dimensions


def _periodic_measure(cell: np.ndarray, pbc: np.ndarray) -> float:
    """Length, area or volume (A^p) spanned by the p periodic cell vectors; raises
    :class:`InvalidAtomsError` when they are linearly dependent (e.g. collinear)."""
    sv = np.linalg.svd(cell[np.asarray(pbc, dtype=bool)], compute_uv=False)
    if not sv.min() > 1e-13 * sv.max():  # zero up to rounding
        which = np.where(pbc)[0].tolist()
        raise InvalidAtomsError(f"the periodic cell vectors {which} are linearly dependent (collinear or "
                                "coplanar): the cell has no extent in a periodic direction")
    return float(np.prod(sv))


def _neighbour_cell(cell: np.ndarray, pbc: np.ndarray, cutoff: float, n_atoms: int) -> np.ndarray:
    """The cell to build the neighbour list with: the same lattice, Minkowski-reduced when its
    periodic vectors are skewed (so the cost does not depend on how the lattice is written),
    after refusing cells whose heights are tiny against the cutoff."""
    from ase.geometry import minkowski_reduce

    pbc = np.asarray(pbc, dtype=bool)
    measure = _periodic_measure(cell, pbc)
    a = cell[pbc]
    if np.prod(np.linalg.norm(a, axis=1)) > 2.0 * measure:  # orthogonality defect > 2: skewed
        cell = minkowski_reduce(cell, pbc)[0]
        a = cell[pbc]
    heights = 1.0 / np.linalg.norm(np.linalg.pinv(a), axis=0)  # distance between lattice planes
    images = np.ceil(cutoff / heights)
    n_cells = float(np.prod(2.0 * images + 1.0))
    if images.max() > _MAX_IMAGES or n_cells > _MAX_IMAGE_CELLS:
        k = int(np.argmin(heights))
        raise InvalidAtomsError(
            f"periodic cell height {heights[k]:.3g} A is too small for the {cutoff:g} A cutoff: it needs "
            f"{images[k]:.3g} periodic images on each side ({n_cells:.3g} image cells; limits {_MAX_IMAGES} "
            f"and {_MAX_IMAGE_CELLS:.0e}); check the cell")
    pairs = n_atoms * n_atoms * _BALL[len(a)] * cutoff ** len(a) / measure  # atoms x density x ball
    if pairs > _MAX_PAIRS:
        raise InvalidAtomsError(
            f"the neighbour list within {cutoff:g} A would hold about {pairs:.3g} pairs ({n_atoms} atoms, "
            f"{n_atoms / measure:.3g} per A^{len(a)} of the periodic cell; limit {_MAX_PAIRS:.0e}): "
            "check the cell and the cutoff")
    return cell


def neighbour_pairs(positions: torch.Tensor, cell: torch.Tensor, pbc: Sequence[bool],
                    cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full neighbour list within ``cutoff`` (A) of one structure, on the device of
    ``positions`` [N, 3] (A; cell [3, 3] rows in A): vesin's torch cell lists, which run on
    the CPU and on CUDA, so a GPU step needs no neighbour list on the host.

    Returns receivers [E] (sorted, then by sender), senders [E] and Cartesian shifts [E, 3]
    such that r_e = x_receiver - x_sender + shift; periodic images included, self-edges removed.
    A skewed cell is Minkowski-reduced first (same lattice, same edges); a periodic cell with
    linearly dependent vectors, or so thin that its images would swamp the list, raises
    :class:`InvalidAtomsError`.
    """
    from vesin_torch import NeighborList

    periodic = torch.tensor([bool(p) for p in pbc])
    if periodic.any():
        reduced = _neighbour_cell(cell.detach().cpu().numpy().astype(np.float64), periodic.numpy(),
                                  float(cutoff), positions.shape[0])
        cell = torch.as_tensor(reduced, dtype=cell.dtype).to(cell.device)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shift_idx = nl.compute(points=positions, box=cell, periodic=periodic.to(positions.device),
                                 quantities="ijS")
    i, j, shift_idx = i.long(), j.long(), shift_idx.long()
    # one order whatever the cutoff (a list within a larger radius, filtered, gives the same
    # edges in the same order): by receiver, sender, then image
    n = positions.shape[0]
    m = int(shift_idx.abs().max()) if shift_idx.numel() else 0
    base = 2 * m + 1
    if n * n * base**3 < 2**62:  # one sort on one integer key (receiver, sender, image)
        image = ((shift_idx[:, 0] + m) * base + shift_idx[:, 1] + m) * base + shift_idx[:, 2] + m
        order = torch.argsort((i * n + j) * base**3 + image)
    else:  # the same order, one stable sort per key
        order = torch.arange(i.shape[0], device=i.device)
        for key in (shift_idx[:, 2], shift_idx[:, 1], shift_idx[:, 0], j, i):
            order = order[torch.argsort(key[order], stable=True)]
    # vesin's vector is x_j - x_i + S @ cell. The list is full, so the edge i <- j with vector
    # x_i - x_j - S @ cell is in it too: take i as the receiver. The shifts are Cartesian, so
    # they do not depend on which basis of the lattice (given or reduced) vesin used
    shifts = -(shift_idx[order].to(cell.dtype) @ cell)
    return i[order], j[order], shifts


class NeighbourCache:
    """A Verlet list for one structure evaluated again and again (MD, relaxations): pairs within
    ``cutoff + skin`` (A), kept while no atom has moved more than ``skin / 2`` since it was built
    and the cell, periodicity and atoms are the same; each call keeps the pairs within ``cutoff``.
    The edges (and their order) are those :func:`neighbour_pairs` gives for the same positions."""

    def __init__(self, cutoff: float, skin: float = 0.5):
        if not skin >= 0:
            raise ValueError(f"skin must be >= 0 (A), got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.builds = 0  # how many times the list was built (for tests and benchmarks)
        self._key = None

    def pairs(self, positions: torch.Tensor, cell: torch.Tensor, pbc: Sequence[bool], numbers: np.ndarray
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Receivers, senders and Cartesian shifts (A) within the cutoff, as :func:`neighbour_pairs`."""
        key = (tuple(bool(p) for p in pbc), np.asarray(numbers).tobytes())
        stale = (self._key != key or positions.shape != self._x.shape or positions.device != self._x.device
                 or not torch.equal(cell, self._cell))
        if not stale and positions.shape[0]:
            stale = float((positions - self._x).square().sum(dim=1).max()) > (0.5 * self._skin) ** 2
        if stale:
            self._key = None
            try:
                self._i, self._j, self._shifts = neighbour_pairs(positions, cell, pbc, self.cutoff + self.skin)
                self._skin = self.skin
            except InvalidAtomsError:  # a cell the skin makes too thin: the cutoff's own error, or no skin
                self._i, self._j, self._shifts = neighbour_pairs(positions, cell, pbc, self.cutoff)
                self._skin = 0.0
            self._key, self._cell, self._x = key, cell.clone(), positions.clone()
            self.builds += 1
        vectors = positions[self._i] - positions[self._j] + self._shifts
        within = vectors.square().sum(dim=1) < self.cutoff * self.cutoff
        return self._i[within], self._j[within], self._shifts[within]


def neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`neighbour_pairs` of ``atoms`` on the CPU as numpy arrays (receivers, senders,
    shifts in A). Works for cells smaller than the cutoff, triclinic cells, mixed periodicity
    and isolated molecules."""
    r, s, sh = neighbour_pairs(torch.from_numpy(atoms.positions.astype(np.float64)),
                               torch.from_numpy(atoms.cell.array.astype(np.float64)), atoms.pbc, cutoff)
    return r.numpy(), s.numpy(), sh.numpy()


def build_graph(images: Sequence[Atoms], elements: Sequence[int], cutoff: float,
                device: torch.device | str | None = None, neighbours: NeighbourCache | None = None) -> Graph:
    """Batch ``images`` into one float64 :class:`Graph` on ``device`` (default CPU) for a model
    with ``elements`` and ``cutoff`` (A); the neighbour lists are built on that device.
    ``neighbours``: a :class:`NeighbourCache` (of this cutoff) for one structure evaluated again."""
    if len(images) == 0:
        raise ValueError("images is empty: give at least one structure")
    if neighbours is not None and (len(images) != 1 or neighbours.cutoff != float(cutoff)):
        raise ValueError("a NeighbourCache serves one structure at its own cutoff")
    device = torch.device(device or "cpu")
    pos, spec, recv, send, shifts, cells, batch = [], [], [], [], [], [], []
    offset = 0
    for g, atoms in enumerate(images):
        check_atoms(atoms)
        spec.append(species_indices(atoms.numbers, elements))
        x = torch.from_numpy(atoms.positions.astype(np.float64)).to(device)
        cell = torch.from_numpy(atoms.cell.array.astype(np.float64)).to(device)
        if neighbours is not None:
            r, s, sh = neighbours.pairs(x, cell, atoms.pbc, atoms.numbers)
        else:
            r, s, sh = neighbour_pairs(x, cell, atoms.pbc, cutoff)
        recv.append(r + offset)
        send.append(s + offset)
        shifts.append(sh)
        pos.append(x)
        cells.append(cell)
        batch.append(torch.full((len(atoms),), g, dtype=torch.long, device=device))
        offset += len(atoms)
    return Graph(
        positions=torch.cat(pos),
        species=torch.from_numpy(np.concatenate(spec)).to(device),
        receivers=torch.cat(recv),
        senders=torch.cat(send),
        shifts=torch.cat(shifts),
        cell=torch.stack(cells),
        pbc=torch.from_numpy(np.stack([a.pbc for a in images])).to(device),
        batch=torch.cat(batch),
        n_graphs=len(images),
    )
