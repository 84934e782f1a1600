"""The Python side of LAMMPS' ``pair_style cace`` (the plugin in pair_cace.cpp calls it).

Each MPI rank holds the positions of its own (local) atoms and of ghost atoms, copies of atoms of
other ranks and periodic images, out to the ghost cutoff. A CACE energy with ``L`` message-passing
layers of cutoff ``r_c`` is exact for a local atom when every atom within ``(L + 1) r_c`` of it is
present, so the ghost shell is ``(L + 1) r_c`` plus the neighbour skin and no periodic images are
needed in the graph: the ghosts are the images. Per rank:

* the full neighbour list of local and ghost atoms within ``r_c`` (vesin, no cell);
* hop counts from the local atoms along its edges: an atom ``h`` hops away influences the local
  energies only through its features up to layer ``L - h``, so edges into atoms ``L + 1`` hops
  away (whose neighbourhoods are cut by the shell) are dropped, and farther atoms are left out;
* the energy is the sum of the local atoms' energies; the forces are minus its gradient with
  respect to every atom of the graph, ghosts included. LAMMPS adds each ghost's force to the atom
  it copies (newton_pair on), so the force on an atom is minus the derivative of the sum of all
  ranks' local energies, the total energy, as in the ASE calculator;
* the per-atom virial splits each edge's ``-r_e (x) dE/dr_e`` between its two atoms; the global
  virial is LAMMPS' ``sum_i x_i f_i`` over local and ghost atoms (the same sum).

Units: LAMMPS ``metal`` (Angstrom, eV, eV/A). Nothing here keeps a reference to LAMMPS' arrays
after a call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase.data import atomic_numbers

from ..calculator import resolve_device, resolve_dtype
from ..checkpoint import load_model
from ..graph import neighbour_pairs, species_indices


class PairCACE:
    """One ``pair_style cace MODEL dtype DTYPE device DEVICE`` of one LAMMPS rank.

    model: pretrained name or model file; dtype ``"float64"`` or ``"float32"``; device
    ``"cpu"``, ``"cuda"``, ``"cuda:N"``. Raises the package's errors (ModelFileError, ...),
    which the plugin turns into a LAMMPS error.
    """

    def __init__(self, model: str, dtype: str = "float64", device: str = "cpu"):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = load_model(model, device=self.device, dtype=self.dtype)
        self.n_layers = int(self.model.config.n_layers)
        self.cutoff = float(self.model.cutoff)
        self.type_species: torch.Tensor | None = None
        self._empty_cell = torch.zeros(3, 3, dtype=torch.float64, device=self.device)

    @property
    def ghost_cutoff(self) -> float:
        """Depth of the ghost shell the energy of a local atom needs, ``(n_layers + 1) * cutoff`` (A)."""
        return (self.n_layers + 1) * self.cutoff

    def set_elements(self, symbols: Sequence[str]) -> None:
        """Element symbol of each LAMMPS atom type (type 1 first), from ``pair_coeff * * ...``."""
        numbers = []
        for s in symbols:
            if s not in atomic_numbers or atomic_numbers[s] == 0:
                raise ValueError(f"{s!r} is not an element symbol (give one symbol per atom type, e.g. H O)")
            numbers.append(atomic_numbers[s])
        index = species_indices(np.array(numbers), self.model.config.elements)
        # LAMMPS types start at 1: entry 0 is never used
        self.type_species = torch.from_numpy(np.concatenate([[0], index])).to(self.device)

    def compute(self, nlocal: int, nall: int, x, types, f, eatom=None, vatom=None) -> float:
        """Energy of the ``nlocal`` local atoms (eV); adds forces to ``f``.

        x: positions [nall, 3] (A, float64 buffer); types [nall] (int32 buffer, 1-based);
        f: forces [nall, 3] (eV/A, float64 buffer, added to); eatom [nall] and vatom [nall, 6]
        (eV; xx yy zz xy xz yz, LAMMPS' sum r f convention), added to when given.
        """
        if self.type_species is None:
            raise RuntimeError("call set_elements (pair_coeff * * ...) before compute")
        positions = torch.from_numpy(np.frombuffer(x, dtype=np.float64, count=3 * nall).reshape(nall, 3).copy())
        type_of = torch.from_numpy(np.frombuffer(types, dtype=np.int32, count=nall).astype(np.int64))
        positions = positions.to(self.device)
        species = self.type_species[type_of.to(self.device)]
        receivers, senders, _ = neighbour_pairs(positions, self._empty_cell, (False, False, False), self.cutoff)
        keep, receivers, senders = self._prune(nlocal, nall, receivers, senders)
        positions, species = positions[keep], species[keep]

        vectors = (positions[receivers] - positions[senders]).to(self.dtype).requires_grad_(True)
        with torch.enable_grad():
            eps = self.model.atomic_energies(species, vectors, receivers, senders)
            local = eps[:nlocal]
            (grad,) = torch.autograd.grad(local.sum(), vectors, allow_unused=True)
        if grad is None:  # no edges at all
            grad = torch.zeros_like(vectors)
        forces = grad.new_zeros(positions.shape[0], 3).index_add_(0, senders, grad).index_add_(0, receivers, -grad)
        energies = local.detach().to(torch.float64) + self.model.e0[species[:nlocal]]

        keep_np = keep.cpu().numpy()
        f_np = np.frombuffer(f, dtype=np.float64, count=3 * nall).reshape(nall, 3)
        f_np[keep_np] += forces.to("cpu", torch.float64).numpy()
        if eatom is not None:
            np.frombuffer(eatom, dtype=np.float64, count=nall)[:nlocal] += energies.cpu().numpy()
        if vatom is not None:
            v = vectors.detach()
            w = -torch.stack([v[:, 0] * grad[:, 0], v[:, 1] * grad[:, 1], v[:, 2] * grad[:, 2],
                              v[:, 0] * grad[:, 1], v[:, 0] * grad[:, 2], v[:, 1] * grad[:, 2]], dim=1)
            per_atom = w.new_zeros(positions.shape[0], 6).index_add_(0, receivers, 0.5 * w)
            per_atom.index_add_(0, senders, 0.5 * w)
            v_np = np.frombuffer(vatom, dtype=np.float64, count=6 * nall).reshape(nall, 6)
            v_np[keep_np] += per_atom.to("cpu", torch.float64).numpy()
        energy = float(energies.sum())
        if not np.isfinite(energy) or not torch.isfinite(forces).all():
            raise FloatingPointError("the model returned a non-finite energy or forces; are two atoms on top "
                                     "of each other?")
        return energy

    def _prune(self, nlocal: int, nall: int, receivers: torch.Tensor, senders: torch.Tensor):
        """The atoms and edges the local energies depend on: atoms at most ``n_layers + 1`` hops
        from a local atom, edges into atoms at most ``n_layers`` hops away. Returns the kept atom
        indices [n] (local atoms first, in order) and the edges renumbered to them."""
        far = self.n_layers + 2
        hops = torch.full((nall,), far, dtype=torch.long, device=receivers.device)
        hops[:nlocal] = 0
        for h in range(1, self.n_layers + 2):
            reached = senders[hops[receivers] == h - 1]
            hops[reached] = torch.minimum(hops[reached], torch.full_like(reached, h))
        keep_atom = hops <= self.n_layers + 1
        keep_edge = hops[receivers] <= self.n_layers
        new_index = torch.cumsum(keep_atom, 0) - 1
        keep = torch.nonzero(keep_atom).view(-1)
        return keep, new_index[receivers[keep_edge]], new_index[senders[keep_edge]]
