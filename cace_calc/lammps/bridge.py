"""The Python side of LAMMPS' ``pair_style cace`` (the plugin in pair_cace.cpp calls it).

Each MPI rank holds the positions of its own (local) atoms and of ghost atoms, copies of atoms of
other ranks and periodic images, out to the ghost cutoff: one model cutoff ``r_c`` (LAMMPS adds
the neighbour skin). Per rank and step:

* the edges into local atoms within ``r_c``, from LAMMPS' full neighbour list of the local atoms
  (the ghosts are the periodic images); the graph holds the local atoms and the ghosts that send
  those edges, and ghosts receive nothing;
* layer 0 needs only the ghosts' elements. Each message-passing layer needs per-atom quantities
  of the senders (the Bchi weights, the Ar densities): every rank computes them for its local
  atoms and LAMMPS' forward communication copies them to the ghosts (``exchange``); in the
  backward pass, reverse communication sums the gradients of the ghosts' copies onto the atoms
  they copy. So the energy of every local atom sees every layer of its neighbours' features, as
  in the ASE calculator, without ghost atoms of their own neighbourhoods;
* the energy is the sum of the local atoms' energies; the forces are minus the gradient of the
  sum over all ranks with respect to the atoms of the graph, ghosts included; LAMMPS adds each
  ghost's force to the atom it copies (newton_pair on);
* the per-atom virial splits each edge's ``-r_e (x) dE/dr_e`` between its two atoms; the global
  virial is LAMMPS' ``sum_i x_i f_i`` over local and ghost atoms (the same sum).

With ``uncertainty yes`` (models with several readout heads) each step also gives the ASE
calculator's ``uncertainty=True`` numbers: every rank computes the variance over heads of its
local atoms' energies, one more forward communication copies it to the ghosts, and the force
sigma of local atom i sums its own variance and those of the senders of its edges (the edges
are symmetric: the atoms that have i as a neighbour are i's neighbours) and adds its part in
proportion to the atom's whole force, whose ghost parts one reverse communication (3 numbers per
atom) sends home first; the energy sigma needs each head's total energy, summed over ranks (MPI
allreduce).

Every rank runs the same exchanges in the same order (one per message-passing layer forward, and
again in reverse order backward, then the uncertainty's two), also a rank without local atoms or
without ghosts. Units:
LAMMPS ``metal`` (Angstrom, eV, eV/A). Nothing here keeps a reference to LAMMPS' arrays after a
call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from ase.data import atomic_numbers

from ..calculator import resolve_device, resolve_dtype
from ..checkpoint import load_model
from ..graph import species_indices


Communicator = Callable[[np.ndarray, bool], None]
Reducer = Callable[[np.ndarray, str], None]


class PairCACE:
    """One ``pair_style cace MODEL dtype DTYPE device DEVICE compile COMPILE uncertainty UNC`` of
    one LAMMPS rank.

    model: pretrained name or model file; dtype ``"float64"`` or ``"float32"``; device
    ``"cpu"``, ``"cuda"``, ``"cuda:N"``; compile ``"yes"`` runs the model's compiled kernels
    (:meth:`CACE.use_compiled_kernels`: same numbers, faster steps, the first step compiles for
    up to a minute) or ``"no"``; uncertainty ``"yes"`` (models with several readout heads)
    computes the uncertainties every step (see :meth:`compute`) or ``"no"``. Torch runs with
    CACE_NUM_THREADS threads when that is set (else torch's default: OMP_NUM_THREADS or the
    cores). Raises the package's errors (ModelFileError, ...), which the plugin turns into a
    LAMMPS error.
    """

    def __init__(self, model: str, dtype: str = "float64", device: str = "cpu", compile: str = "no",
                 uncertainty: str = "no"):
        for name, value in (("compile", compile), ("uncertainty", uncertainty)):
            if value not in ("yes", "no"):
                raise ValueError(f"{name} must be yes or no, got {value!r}")
        threads = os.environ.get("CACE_NUM_THREADS")
        if threads:
            if not threads.isdigit() or int(threads) < 1:
                raise ValueError(f"CACE_NUM_THREADS must be a positive integer, got {threads!r}")
            torch.set_num_threads(int(threads))
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = load_model(model, device=self.device, dtype=self.dtype)
        self.uncertainty = uncertainty == "yes"
        if self.uncertainty and self.model.n_heads < 2:
            raise ValueError(f"uncertainty yes: model {model!r} has one readout head and carries no uncertainty "
                             "(use a model trained with n_heads > 1, or uncertainty no)")
        if compile == "yes":
            self.model.use_compiled_kernels()
        self.cutoff = float(self.model.cutoff)
        self.type_species: torch.Tensor | None = None
        self.communicate: Communicator | None = None
        self.allreduce: Reducer | None = None
        self.exchange_widths = self._exchange_widths()
        self.largest_force_sigma = 0.0  # eV/A, over every step so far

    @property
    def force_threshold(self) -> float:
        """The model's per-atom force uncertainty threshold (eV/A; its metadata
        ``uncertainty.forces_threshold_ev_per_a``), 0 when it has none."""
        metadata = getattr(self.model, "metadata", None) or {}
        value = (metadata.get("uncertainty") or {}).get("forces_threshold_ev_per_a")
        return float(value) if value else 0.0

    @property
    def ghost_cutoff(self) -> float:
        """Depth of the ghost shell (A): the model cutoff; LAMMPS adds its neighbour skin."""
        return self.cutoff

    @property
    def exchange_width(self) -> int:
        """Most numbers per atom of one exchange (0 for a model without message passing and
        without uncertainty): the size of LAMMPS' communication buffers per atom."""
        return max(self.exchange_widths + [3] * self.uncertainty, default=0)

    def _exchange_widths(self) -> list[int]:
        """Row width of each exchange of one step, in call order, from the model on a dimer."""
        widths: list[int] = []

        def record(rows: torch.Tensor) -> torch.Tensor:
            widths.append(rows.shape[1])
            return rows.new_zeros(1, rows.shape[1])

        vectors = torch.tensor([[1.0, 0.0, 0.0]], dtype=self.dtype, device=self.device)
        edge = torch.zeros(1, dtype=torch.long, device=self.device)
        with torch.no_grad():
            self.model.atomic_energies(edge.repeat(2), vectors, edge, edge + 1, n_receivers=1, exchange=record)
        return widths

    def set_communicator(self, communicate: Communicator, allreduce: Reducer | None = None) -> None:
        """``communicate(rows, reverse)`` on a C-contiguous float64 array [nall, width] of the
        rank's local and ghost atoms: forward (reverse False) copies each atom's row to its ghost
        copies; reverse adds the rows of the ghosts onto the atoms they copy (LAMMPS'
        forward_comm and reverse_comm of the pair style). ``allreduce(values, op)`` replaces a
        float64 array [n] by its sum (op ``"sum"``) or largest value (``"max"``) over all ranks
        (MPI_Allreduce); needed with ``uncertainty yes``."""
        self.communicate = communicate
        self.allreduce = allreduce

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

    def compute(self, nlocal: int, nall: int, x, types, pair_i, pair_j, f, eatom=None, vatom=None,
                tags=None, sigma=None, stats=None) -> float:
        """Energy of the ``nlocal`` local atoms (eV); adds forces to ``f``.

        x: positions [nall, 3] (A, float64 buffer); types [nall] (int32 buffer, 1-based);
        pair_i, pair_j: LAMMPS' full neighbour list of the local atoms as pairs (int32 buffers
        [P]: local atom i, local or ghost atom j, within the cutoff plus skin); f: forces
        [nall, 3] (eV/A, float64 buffer, added to); eatom [nall] and vatom [nall, 6] (eV; xx yy
        zz xy xz yz, LAMMPS' sum r f convention), added to when given.

        With ``uncertainty yes`` (else leave them None): tags, the atom IDs [nall] (int32
        buffer); sigma [nlocal, 2] (float64 buffer, overwritten): each local atom's energy sigma
        (eV) and force sigma (eV/A, per Cartesian component); stats [4] (float64 buffer,
        overwritten, the same on every rank): the total energy's sigma (eV), the largest force
        sigma of this step (eV/A), the ID of its atom, the largest force sigma of every step so
        far (eV/A). The ASE calculator's ``uncertainty=True`` numbers.
        """
        if self.type_species is None:
            raise RuntimeError("call set_elements (pair_coeff * * ...) before compute")
        if self.exchange_width and self.communicate is None:
            raise RuntimeError("a message-passing model and uncertainty yes need set_communicator before compute")
        if self.uncertainty and (self.allreduce is None or sigma is None or stats is None or tags is None):
            raise RuntimeError("uncertainty yes needs set_communicator(communicate, allreduce) and the tags, "
                               "sigma and stats buffers")
        if nlocal == 0:  # nothing to compute, but the other ranks' exchanges need this one
            for width in self.exchange_widths:
                self.communicate(np.zeros((nall, width)), False)
            for width in reversed(self.exchange_widths):
                self.communicate(np.zeros((nall, width)), True)
            if self.uncertainty:
                self.communicate(np.zeros((nall, 1)), False)
                self.communicate(np.zeros((nall, 3)), True)
                self._summarize(np.zeros(self._total_width()), np.zeros(0), np.zeros(0, np.int64), stats)
            return 0.0
        positions = torch.from_numpy(np.frombuffer(x, dtype=np.float64, count=3 * nall).reshape(nall, 3).copy())
        type_of = torch.from_numpy(np.frombuffer(types, dtype=np.int32, count=nall).astype(np.int64))
        positions = positions.to(self.device)
        species = self.type_species[type_of.to(self.device)]
        keep, receivers, senders, vectors = self._local_graph(
            nlocal, positions, _int_tensor(pair_i, self.device), _int_tensor(pair_j, self.device))
        n_graph = keep.shape[0]
        species = species[keep]
        exchange = _Exchange(self.communicate, nlocal, nall, keep[nlocal:].cpu().numpy())

        vectors = vectors.to(self.dtype).requires_grad_(True)
        with torch.enable_grad():
            rows = self.uncertainty and self.model.has_rigidity
            heads = self.model.atomic_energies(species, vectors, receivers, senders, n_receivers=nlocal,
                                               exchange=exchange, heads=self.uncertainty, rows=rows)
            heads, last_rows = (heads[0], heads[1].detach()) if rows else (heads, None)
            local = heads.mean(dim=-1) if self.uncertainty else heads  # the members' mean: the readout
            # the ghosts' rows enter the objective with weight zero, so that every exchange's
            # backward (a reverse communication) runs on every rank, whatever its graph; the
            # exchanges are chained, so that it runs them in the same order everywhere
            objective = local.sum() + sum(0.0 * g.sum() for g in exchange.outputs)
            (grad,) = torch.autograd.grad(objective, vectors, allow_unused=True)
        if exchange.backward_calls != len(self.exchange_widths):
            raise RuntimeError(f"{exchange.backward_calls} of {len(self.exchange_widths)} reverse exchanges ran")
        if grad is None:  # no edges at all
            grad = torch.zeros_like(vectors)
        forces = grad.new_zeros(n_graph, 3).index_add_(0, senders, grad).index_add_(0, receivers, -grad)
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
            per_atom = w.new_zeros(n_graph, 6).index_add_(0, receivers, 0.5 * w)
            per_atom.index_add_(0, senders, 0.5 * w)
            v_np = np.frombuffer(vatom, dtype=np.float64, count=6 * nall).reshape(nall, 6)
            v_np[keep_np] += per_atom.to("cpu", torch.float64).numpy()
        energy = float(energies.sum())
        if not np.isfinite(energy) or not torch.isfinite(forces).all():
            raise FloatingPointError("the model returned a non-finite energy or forces; are two atoms on top "
                                     "of each other?")
        if self.uncertainty:
            self._uncertainty(nall, heads.detach(), last_rows, forces.detach(), species[:nlocal], keep_np, receivers,
                              senders, tags, sigma, stats)
        return energy

    def _total_width(self) -> int:
        """Width of the per-rank sums reduced over ranks for the energy sigma: the heads' energies
        and, when the model has its rigidity fitted, the last-layer rows."""
        return self.model.n_heads + (self.model.readout.n_rows if self.model.has_rigidity else 0)

    def _uncertainty(self, nall: int, heads: torch.Tensor, last_rows: torch.Tensor | None, forces: torch.Tensor,
                     species: torch.Tensor, keep: np.ndarray, receivers: torch.Tensor, senders: torch.Tensor, tags,
                     sigma, stats) -> None:
        """The uncertainties of :meth:`compute` from the local atoms' energies of every head
        [nlocal, K] (eV) and their last-layer rows [nlocal, R] (None without a fitted rigidity),
        this rank's forces on the graph's atoms [n, 3] (eV/A) and the graph
        (``keep``: the rank's index of each graph atom; edges into the local atoms). As the
        model: energy sigma s0 |(sum_i r_i) B| and atom i's s0 |r_i B| (the rigidity; without it
        s0 * std_k(sum_i eps_ik) and s0 * sqrt(var_i)), its
        force sigma CACE.force_sigma_estimate of sqrt(var_i + sum of var_j over the senders j of its
        edges) and its whole force (var: the population variance over heads, eV^2; ``species``
        of the local atoms). The ghosts' variances come from their owners (forward) and the
        local atoms' force parts from the ranks that hold them as ghosts (reverse)."""
        scale = self.model.uncertainty_scale.to("cpu", torch.float64).numpy()
        heads = heads.to("cpu", torch.float64)
        nlocal = heads.shape[0]
        var = heads.var(dim=-1, correction=0)
        rows = np.zeros((nall, 1))
        rows[:nlocal, 0] = var.numpy()
        self.communicate(rows, False)  # the ghosts' variances from the ranks that own them
        var_graph = torch.from_numpy(rows[keep, 0])
        neighbourhood = var.clone().index_add_(0, receivers.cpu(), var_graph[senders.cpu()])
        parts = np.zeros((nall, 3))
        parts[keep] = forces.to("cpu", torch.float64).numpy()
        self.communicate(parts, True)  # each local atom's whole force (its ghosts' parts sent home)
        model = self.model
        force_sigma = model.force_sigma_estimate(neighbourhood.sqrt().to(model.e0.device), torch.from_numpy(
            parts[:nlocal]).to(model.e0.device), species).cpu().numpy()
        out = np.frombuffer(sigma, dtype=np.float64, count=2 * nlocal).reshape(nlocal, 2)
        # E0 cancels in the spread of the total energy: left out, it costs no precision
        totals = [heads.sum(dim=0).numpy()]
        if last_rows is None:
            out[:, 0] = scale[0] * var.sqrt().numpy()
        else:
            rig = model.energy_sigma_rigidity(last_rows, torch.zeros(nlocal, dtype=torch.long,
                                                                     device=last_rows.device), 1)
            out[:, 0] = rig["energies_uncertainty"].cpu().numpy()
            totals.append(last_rows.to("cpu", torch.float64).sum(dim=0).numpy())
        out[:, 1] = force_sigma
        ids = np.frombuffer(tags, dtype=np.int32, count=nlocal).astype(np.int64)
        self._summarize(np.concatenate(totals), force_sigma, ids, stats)

    def _summarize(self, local_totals: np.ndarray, force_sigma: np.ndarray, ids: np.ndarray, stats) -> None:
        """``stats`` of :meth:`compute` from this rank's sums over its local atoms of the energies
        per head [K] (eV) and of the last-layer rows [R] (with a fitted rigidity), its atoms'
        force sigmas (eV/A) and IDs, reduced over all ranks (the smallest ID among atoms with the
        same largest sigma)."""
        totals = np.array(local_totals, dtype=np.float64)
        self.allreduce(totals, "sum")
        largest = np.array([force_sigma.max() if len(force_sigma) else 0.0])
        self.allreduce(largest, "max")
        candidates = ids[force_sigma == largest[0]]
        atom = np.array([-float(candidates.min()) if len(candidates) else -np.inf])
        self.allreduce(atom, "max")
        self.largest_force_sigma = max(self.largest_force_sigma, float(largest[0]))
        scale = float(self.model.uncertainty_scale[0])
        k = self.model.n_heads
        if self.model.has_rigidity:
            b = self.model.energy_rigidity.to("cpu", torch.float64).numpy()
            energy_sigma = scale * float(np.linalg.norm(totals[k:] @ b))
        else:
            energy_sigma = scale * totals[:k].std()
        out = np.frombuffer(stats, dtype=np.float64, count=4)
        out[:] = (energy_sigma, largest[0], -atom[0], self.largest_force_sigma)

    def _local_graph(self, nlocal: int, positions: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor):
        """The edges of the neighbour pairs within the cutoff (receiver i, sender j). Returns the
        graph's atoms [n] (indices into the rank's atoms: the local atoms in order, then the
        ghosts that send an edge, in order), the edges' receivers and senders renumbered to them
        and the edge vectors x_i - x_j [E, 3] (A, float64)."""
        vectors = positions[pair_i] - positions[pair_j]
        within = vectors.square().sum(1) < self.cutoff * self.cutoff
        receivers, senders, vectors = pair_i[within], pair_j[within], vectors[within]
        used = torch.zeros(positions.shape[0], dtype=torch.bool, device=positions.device)
        used[:nlocal] = True
        used[senders] = True
        keep = torch.nonzero(used).view(-1)
        new_index = torch.cumsum(used, 0) - 1
        return keep, receivers, new_index[senders], vectors


def _int_tensor(buffer, device: torch.device) -> torch.Tensor:
    """An int32 buffer as a long tensor on ``device``."""
    return torch.from_numpy(np.frombuffer(buffer, dtype=np.int32).astype(np.int64)).to(device)


class _Exchange:
    """The model's ``exchange`` on one rank and step: rows of the local atoms -> rows of the
    graph's ghosts ``ghosts`` (indices among the rank's nall atoms), through ``communicate``."""

    def __init__(self, communicate: Communicator | None, nlocal: int, nall: int, ghosts: np.ndarray):
        self.communicate, self.nlocal, self.nall, self.ghosts = communicate, nlocal, nall, ghosts
        self.outputs: list[torch.Tensor] = []  # the ghosts' rows of each exchange
        self.backward_calls = 0

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if self.outputs:  # chain the exchanges, so that the backward pass runs them in reverse order
            rows = rows + 0.0 * self.outputs[-1].sum()
        out = _ExchangeFunction.apply(rows, self)
        self.outputs.append(out)
        return out

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        buf = np.zeros((self.nall, rows.shape[1]))
        buf[:self.nlocal] = rows.detach().to("cpu", torch.float64).numpy()
        self.communicate(buf, False)
        return torch.from_numpy(buf[self.ghosts]).to(device=rows.device, dtype=rows.dtype)

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        self.backward_calls += 1
        buf = np.zeros((self.nall, grad.shape[1]))
        buf[self.ghosts] = grad.detach().to("cpu", torch.float64).numpy()
        self.communicate(buf, True)
        return torch.from_numpy(buf[:self.nlocal]).to(device=grad.device, dtype=grad.dtype)


class _ExchangeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, exchange):
        ctx.exchange = exchange
        return exchange.forward(rows)

    @staticmethod
    def backward(ctx, grad):
        return ctx.exchange.backward(grad), None
