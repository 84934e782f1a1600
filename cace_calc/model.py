"""The CACE model: per-atom energies from a graph, and energy, forces and stress from one
forward and one backward pass.

Shapes: N atoms, E edges, n radial functions, m radial channels after mixing, V angular
components, C = N_emb^2 element channels, S invariants. Units: Angstrom and eV.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch
from torch.utils.checkpoint import checkpoint

from .graph import Graph
from .nn.angular import CartesianAngular
from .nn.edge_sums import ReceiverSlots, edge_sums
from .nn.interaction import ArMessage, BchiMessage, MemoryMessage
from .nn.radial import BesselBasis, PolynomialCutoff, RadialTransform
from .nn.readout import Readout
from .nn.symmetrize import Symmetrizer
from .nn.zbl import ZBLCore

SLOTS_PER_TILE = 1 << 15  # CPU: per-slot tensors of a tile stay in the allocator's cache
SLOTS_PER_TILE_CUDA = 1 << 21  # GPU: few, large kernels
# Systems of more than RECOMPUTE_ABOVE_ATOMS atoms run the per-atom work after the edge sums
# (radial mixing, symmetriser, next layer's weights, readout) in node tiles of about
# ATOMS_PER_NODE_TILE receivers (whole edge tiles), recomputed in the backward pass instead of
# stored, and recompute the edge basis' intermediates too. Models with Ar messages keep one tile.
RECOMPUTE_ABOVE_ATOMS = 1 << 14
ATOMS_PER_NODE_TILE = 1 << 12  # CPU: 2,048-4,096 ran fastest at 98,304 water atoms; 16,384 faulted
ATOMS_PER_NODE_TILE_CUDA = 1 << 16


@dataclass
class _ReceiverTile:
    """What the per-atom work on one tile of receivers needs: the angular [t, V, K] and radial
    [t, n, K] parts of the edge basis in edge tiles, the sender of every slot [n * K], and the
    tile's sender embeddings theta_s[z_i] [n, a] and receiver factors theta_r[z_i] [1, 1, b, n, 1]."""

    y: list[torch.Tensor]
    r: list[torch.Tensor]
    senders: torch.Tensor
    theta_s: torch.Tensor
    theta_r: torch.Tensor

    @property
    def n_atoms(self) -> int:
        return self.theta_s.shape[0]


@dataclass
class CACEConfig:
    """Hyperparameters of a CACE model (everything needed to rebuild it).

    elements: atomic numbers the model knows, in embedding-table order.
    cutoff: r_c in Angstrom; cutoff_p: exponent p of the polynomial cutoff.
    n_rbf: Bessel functions; n_radial: radial channels after mixing.
    l_max, nu_max: angular order and body order of the invariants (nu_max <= 4).
    n_embed: element embedding size N_emb (C = n_embed**2 edge channels).
    embed_receiver: separate receiver embedding (else one table for both ends).
    n_layers: message-passing layers; messages: which of "bchi", "ar", "memory" each layer uses.
    bchi_shared_l / bchi_shared_channels: share Bchi weights across l / across channels.
    avg_num_neighbors: messages are divided by its square root.
    readout_hidden: hidden widths of the readout MLP; readout_linear: add a linear term.
    n_heads: readout heads. One is the plain CACE readout; several are a shallow ensemble: the
        prediction is their mean, their spread (calibrated) the uncertainty.
    zbl_radii: None (no core), or per element pair [nz][nz] the distance r_outer (A) below which
        the ZBL nuclear repulsion is switched on (fully on below r_outer / 2; nn/zbl.py).
    """

    elements: list[int]
    cutoff: float = 5.5
    cutoff_p: float = 6.0
    n_rbf: int = 6
    n_radial: int = 12
    l_max: int = 3
    nu_max: int = 3
    n_embed: int = 3
    embed_receiver: bool = True
    n_layers: int = 1
    messages: list[str] = field(default_factory=lambda: ["bchi"])
    bchi_shared_l: bool = False
    bchi_shared_channels: bool = False
    avg_num_neighbors: float = 1.0
    readout_hidden: list[int] = field(default_factory=lambda: [32, 16])
    readout_linear: bool = True
    n_heads: int = 1
    zbl_radii: list[list[float]] | None = None

    def __post_init__(self):
        if not self.elements or len(set(self.elements)) != len(self.elements):
            raise ValueError(f"elements must be a non-empty list of distinct atomic numbers, got {self.elements}")
        if any(not 1 <= z <= 118 for z in self.elements):
            raise ValueError(f"elements must be atomic numbers 1..118, got {self.elements}")
        if self.cutoff <= 0:
            raise ValueError(f"cutoff must be positive, got {self.cutoff}")
        if not 1 <= self.nu_max <= 4:
            raise ValueError(f"nu_max must be between 1 and 4, got {self.nu_max}")
        unknown = set(self.messages) - {"bchi", "ar", "memory"}
        if unknown:
            raise ValueError(f"unknown message types {sorted(unknown)}; use 'bchi', 'ar', 'memory'")
        if self.n_layers > 0 and not {"bchi", "ar"} & set(self.messages):
            raise ValueError("message passing needs 'bchi' or 'ar' in messages")
        if type(self.n_heads) is not int or self.n_heads < 1:
            raise ValueError(f"n_heads must be a positive integer, got {self.n_heads!r}")

    @classmethod
    def from_dict(cls, d: dict) -> CACEConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class CACE(torch.nn.Module):
    """Cartesian Atomic Cluster Expansion potential (B. Cheng, npj Comput. Mater. 10, 157 (2024)).

    ``forward(graph)`` returns a dict: ``energy`` [G] (eV), ``energies`` [N] (eV, per atom,
    E0 included), and when asked ``forces`` [N, 3] (eV/A) and ``stress`` [G, 3, 3]
    (eV/A^3, ASE sign: positive is tensile). Parameters are created in float64; move the model
    with ``.to(dtype=..., device=...)``.
    """

    def __init__(self, config: CACEConfig):
        super().__init__()
        self.config = config
        cfg = config
        nz = len(cfg.elements)
        self.n_channels = cfg.n_embed**2
        self.register_buffer("elements", torch.tensor(cfg.elements, dtype=torch.long))
        self.register_buffer("e0", torch.zeros(nz, dtype=torch.float64))
        self.embed_sender = torch.nn.Parameter(torch.randn(nz, cfg.n_embed, dtype=torch.float64))
        self.embed_receiver = (
            torch.nn.Parameter(torch.randn(nz, cfg.n_embed, dtype=torch.float64)) if cfg.embed_receiver else None
        )
        self.bessel = BesselBasis(cfg.n_rbf, cfg.cutoff)
        self.cutoff_fn = PolynomialCutoff(cfg.cutoff, cfg.cutoff_p)
        self.angular = CartesianAngular(cfg.l_max)
        l_of_v = self.angular.l_of_v
        self.radial_transform = RadialTransform(cfg.l_max, cfg.n_rbf, cfg.n_radial, self.n_channels, l_of_v)
        self.symmetrizer = Symmetrizer(cfg.l_max, cfg.nu_max)
        n_node = cfg.n_radial * self.symmetrizer.n_sym * self.n_channels
        self.bchi = torch.nn.ModuleList()
        self.ar = torch.nn.ModuleList()
        self.memory = torch.nn.ModuleList()
        for _ in range(cfg.n_layers):
            if "bchi" in cfg.messages:
                self.bchi.append(BchiMessage(n_node, cfg.l_max, self.n_channels,
                                             cfg.bchi_shared_l, cfg.bchi_shared_channels))
            if "ar" in cfg.messages:
                self.ar.append(ArMessage(cfg.l_max, cfg.n_radial, self.n_channels, l_of_v))
            if "memory" in cfg.messages:
                self.memory.append(MemoryMessage(cfg.l_max, cfg.n_radial, self.n_channels, l_of_v))
        self.mp_norm = 1.0 / math.sqrt(cfg.avg_num_neighbors)
        self.readout = Readout(n_node * (cfg.n_layers + 1), cfg.readout_hidden, cfg.readout_linear, cfg.n_heads)
        self.zbl = ZBLCore(cfg.elements, cfg.zbl_radii) if cfg.zbl_radii is not None else None
        if cfg.n_heads > 1:
            # calibration factors of the heads' spread, set on a validation set: energies,
            # forces (neighbourhood estimate), forces of the members; and the estimate's factor
            # per element (errors differ by element; the estimate alone does not see it)
            self.register_buffer("uncertainty_scale", torch.ones(3, dtype=torch.float64))
            self.register_buffer("estimate_element_scale", torch.ones(nz, dtype=torch.float64))
            # per element, the estimate's part in proportion to the predicted force (errors grow with
            # the force: a heteroscedastic term, dimensionless; zero in files calibrated without it)
            self.register_buffer("estimate_force_fraction", torch.zeros(nz, dtype=torch.float64))
            # per element, each head's constant offset from the heads' mean (eV, summing to zero over
            # heads), removed so that the spread is what changes with the structure, not a constant
            self.register_buffer("head_offsets", torch.zeros(nz, cfg.n_heads, dtype=torch.float64))
            # the energy's prediction rigidity: B [R, R] with (F^T F + lambda)^-1 = B B^T, F the training
            # structures' mean last-layer rows (uncertainty.fit_rigidity); energy sigma s0 |sum_i r_i B|.
            # [R, 0] until fitted (files from before it: the heads' energy spread instead)
            self.register_buffer("energy_rigidity", torch.zeros(self.readout.n_rows, 0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files calibrated before the estimate had per-element factors, a force term and the heads offsets
        nz = len(self.config.elements)
        if self.config.n_heads > 1 and prefix + "uncertainty_scale" in state_dict:
            state_dict.setdefault(prefix + "estimate_element_scale", torch.ones(nz, dtype=torch.float64))
            state_dict.setdefault(prefix + "head_offsets", torch.zeros(nz, self.config.n_heads, dtype=torch.float64))
            state_dict.setdefault(prefix + "estimate_force_fraction", torch.zeros(nz, dtype=torch.float64))
            rigidity = state_dict.get(prefix + "energy_rigidity")
            if rigidity is None:
                state_dict[prefix + "energy_rigidity"] = self.energy_rigidity
            else:  # the buffer takes the fitted shape
                self.energy_rigidity = torch.zeros_like(rigidity, dtype=torch.float64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, recurse=True):
        # keep E0 in float64 when the model is cast (float32 would cost ~1e-5 eV per atom)
        e0, rigidity = self.e0, getattr(self, "energy_rigidity", None)
        super()._apply(fn, recurse)
        self.e0 = e0.to(device=self.elements.device, dtype=torch.float64)
        if rigidity is not None:  # and the rigidity (a sum of many atoms' rows goes through it)
            self.energy_rigidity = rigidity.to(device=self.elements.device, dtype=torch.float64)
        return self

    @property
    def has_rigidity(self) -> bool:
        """Whether the energy's prediction rigidity is fitted (:func:`cace_calc.uncertainty.fit_rigidity`)."""
        return self.n_heads > 1 and self.energy_rigidity.shape[1] > 0

    @property
    def cutoff(self) -> float:
        """Cutoff radius in Angstrom."""
        return float(self.cutoff_fn.cutoff)

    @property
    def atomic_numbers(self) -> list[int]:
        """Atomic numbers the model supports, in embedding order."""
        return list(self.config.elements)

    @property
    def n_heads(self) -> int:
        """Readout heads: 1, or the members of a shallow ensemble that carries an uncertainty."""
        return self.config.n_heads

    def atomic_energies(self, species: torch.Tensor, vectors: torch.Tensor, receivers: torch.Tensor,
                        senders: torch.Tensor, n_receivers: int | None = None,
                        exchange: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        heads: bool = False, rows: bool = False):
        """Per-atom energies without E0 [n_receivers] (eV) from element indices [N] and edge
        vectors r_e = x_receiver - x_sender + shift [E, 3] (Angstrom): the mean over readout
        heads, or with ``heads=True`` every head's [n_receivers, K]. The ZBL core, when the
        model has one, is in every head. ``rows=True`` returns a pair: those and the readout's
        last-layer rows [n_receivers, R] (for the energy's prediction rigidity).

        By default every atom is a receiver (n_receivers = N). With ``n_receivers`` < N the atoms
        from n_receivers on are ghosts: copies of atoms held elsewhere (another MPI rank, a
        periodic image) that only send edges (every receiver index < n_receivers). Layer 0 needs
        only their elements; each later layer gets their per-atom inputs (Bchi sender weights,
        Ar densities) from ``exchange``, a differentiable map from rows of the receivers
        [n_receivers, F] to rows of the ghosts [N - n_receivers, F] whose backward pass sums
        the ghosts' gradients onto the atoms they copy. When given, it is called once per
        message-passing layer (the quantities side by side in one row), also without ghosts, so
        that every rank runs the same exchanges in the same order.
        """
        n_atoms = species.shape[0]
        n_recv = n_atoms if n_receivers is None else int(n_receivers)
        if self.config.n_layers and n_recv < n_atoms and exchange is None:
            raise ValueError("ghost atoms (n_receivers < N) of a message-passing model need an exchange function")

        def with_ghosts(*rows: torch.Tensor | None) -> list[torch.Tensor | None]:
            # per-atom tensors of the receivers [n_recv, ...] -> of all atoms [N, ...], one exchange
            if exchange is None:
                return list(rows)
            present = [r for r in rows if r is not None]
            ghosts = exchange(torch.cat([r.reshape(n_recv, -1) for r in present], dim=1))
            out, start = [], 0
            for r in rows:
                width = math.prod(r.shape[1:]) if r is not None else 0
                out.append(None if r is None else
                           torch.cat([r, ghosts[:, start:start + width].reshape(-1, *r.shape[1:])]))
                start += width
            return out
        theta_s = self.embed_sender
        theta_r = self.embed_receiver if self.embed_receiver is not None else theta_s

        # Edges sit in per-receiver slots [N, F, K]. The angular and radial parts of their basis
        # are computed in edge tiles of receivers, small enough to stay in the allocator's cache,
        # and kept for the backward pass of the edge sums (nn/edge_sums.py), which forms their
        # products tile by tile in both passes. Large systems also run the per-atom work in node
        # tiles of receivers (:meth:`_layer`), each recomputed in the backward pass: the only
        # tensors over all atoms are the basis parts, the edge sums, the feature rows and the
        # sender weights [N, L, C].
        slots = ReceiverSlots(receivers, n_recv)
        far = vectors.new_tensor([2.0 * self.cutoff + 1.0, 0.0, 0.0])  # empty slots: zero basis
        slot_vectors = slots(vectors, far).transpose(1, 2).contiguous()  # [N, 3, K]
        slot_senders = slots(senders.unsqueeze(-1), senders.new_zeros(1)).view(-1)  # [N * K]
        cuda = vectors.device.type == "cuda"
        edge_rows = max(1, (SLOTS_PER_TILE_CUDA if cuda else SLOTS_PER_TILE) // slots.k)
        node_rows = max(n_recv, 1)
        if n_recv > RECOMPUTE_ABOVE_ATOMS and not len(self.ar):  # Ar needs all senders' A: one tile
            node_rows = edge_rows * max(1, (ATOMS_PER_NODE_TILE_CUDA if cuda else ATOMS_PER_NODE_TILE) // edge_rows)
        recompute = node_rows < n_recv and slot_vectors.requires_grad
        basis_fn = self.__dict__.get("_compiled_edge_basis", self.edge_basis)
        tiles = []
        # split, not slices: the backward of a slice would fill a full-size gradient per tile
        for v, z, s in zip(slot_vectors.split(node_rows), species[:n_recv].split(node_rows),
                           slot_senders.split(node_rows * slots.k)):
            parts = [checkpoint(basis_fn, e, use_reentrant=False) if recompute else basis_fn(e)
                     for e in v.split(edge_rows)]
            tiles.append(_ReceiverTile([p[0] for p in parts], [p[1] for p in parts], s, theta_s[z],
                                       theta_r[z].T[None, None, :, :, None]))

        compiled = "_compiled_edge_basis" in self.__dict__
        weights = theta_s[species].unsqueeze(1)  # layer 0's sender weights: theta_s[z_j, a] [N, 1, a]
        state = [(None, ()) for _ in tiles]  # per tile: A of the last layer, feature rows so far
        for t in range(self.config.n_layers + 1):
            ar = None
            if t > 0 and len(self.ar):  # per edge, not in slots (one tile): no published model uses Ar
                ar = self._ar_messages(t - 1, a_rows, vectors, receivers, senders, n_recv)
            outs = []
            for tile, (a, features) in zip(tiles, state):
                # the edge sums keep only the basis parts for their backward pass; the node work
                # after them is what a tile recomputes
                sums = None
                if t == 0 or len(self.bchi):
                    sums = edge_sums(weights, tile.senders, tile.y, tile.r, self.angular.l_blocks,
                                     compiled=compiled)
                fn = functools.partial(self._layer, t, tile, heads, rows)
                outs.append(checkpoint(fn, sums, ar, a, *features, use_reentrant=False) if recompute
                            else fn(sums, ar, a, *features))
            if t < self.config.n_layers:
                weights = torch.cat([o[0] for o in outs]) if len(self.bchi) else None
                state = [(o[1], o[2]) for o in outs]
                a_rows = state[0][0].permute(2, 0, 1, 3) if len(self.ar) else None  # [n_recv, V, C, m]
                weights, a_rows = with_ghosts(weights, a_rows)
        eps = torch.cat(outs)  # [n_recv, K], or [n_recv, 1]: the readout alone, the members' mean
        last_rows = None
        if rows:
            eps, last_rows = eps[:, :-self.readout.n_rows], eps[:, -self.readout.n_rows:]
        if heads and self.n_heads > 1:
            eps = eps - self.head_offsets.to(eps.dtype)[species[:n_recv]]
        if self.zbl is not None:  # only edges shorter than the largest switch-off radius have a core
            d2 = (vectors * vectors).sum(dim=-1)
            near = torch.nonzero(d2 < (self.zbl.max_radius + 1e-3) ** 2).squeeze(1)
            r_near = receivers[near]
            core = self.zbl(species[r_near], species[senders[near]], d2[near].sqrt())
            eps = eps + eps.new_zeros(n_recv).index_add_(0, r_near, core.to(eps.dtype)).unsqueeze(-1)
        eps = eps if heads else eps[:, 0]
        return (eps, last_rows) if rows else eps

    def _layer(self, t: int, tile: _ReceiverTile, heads: bool, rows: bool, sums: torch.Tensor | None, ar: torch.Tensor | None,
               a_prev: torch.Tensor | None, *features: torch.Tensor):
        """Layer t on one tile of n receivers: the density A_t [V, C, n, m] (layer 0 from the
        sender embeddings, later layers from messages), B_t = Sym(A_t) and its feature rows
        [n, m * S * C]. ``sums``: the edge sums of the tile's receivers [n, V, n_rbf, F]
        (sender weights W = theta_s for layer 0, Bchi weights after); ``ar``: the summed Ar
        messages [V, C, n, m] or None. Returns, after the last
        layer, the per-atom energies of every head [n, K] (eV); before, (the tile's sender weights of the next
        layer [n, L, C] or None, A_t or None, feature rows of layers 0..t)."""
        n = tile.n_atoms
        a = None
        if sums is not None:
            a = self.__dict__.get("_compiled_density", self._density)(sums, tile.theta_r)
        if t > 0:
            if ar is not None:
                a = ar if a is None else a + ar
            a = a * self.mp_norm
            if len(self.memory):
                a = a + self.memory[t - 1](a_prev)
        b = self.__dict__.get("_compiled_symmetrizer", self.symmetrizer)(a)  # [S, C, n, m]
        features = (*features, b.permute(2, 3, 0, 1).reshape(n, -1))  # CACE's (m, s, c) order
        if t == self.config.n_layers:
            return self.readout(torch.stack(features, dim=-1).reshape(n, -1), heads=heads, rows=rows)
        next_weights = None
        if len(self.bchi):
            w = self.bchi[t](features[-1]).reshape(n, -1, self.config.n_embed, self.config.n_embed)  # [n, L, a, b]
            next_weights = (w * tile.theta_s[:, None, :, None]).reshape(n, -1, self.n_channels)
        return next_weights, (a if len(self.ar) or len(self.memory) else None), features

    def _density(self, sums: torch.Tensor, theta_r: torch.Tensor) -> torch.Tensor:
        """The density A [V, C, n, m] of n receivers from their edge sums [n, V, n_rbf, F] and
        receiver factors theta_r[z_i] [1, 1, b, n, 1]: A[v, (a, b), i] = theta_r[z_i, b]
        sum_e W[s(e), l(v), (a, b) or a] R[e] Y[e, v], then mixed over the radial functions."""
        n, n_v, n_rbf = sums.shape[0], sums.shape[1], sums.shape[2]
        sums = sums.permute(1, 3, 0, 2).reshape(n_v, self.config.n_embed, -1, n, n_rbf)  # [V, a, b or 1, n, n_rbf]
        return self.radial_transform((sums * theta_r).reshape(-1, self.n_channels, n, n_rbf))

    def _ar_messages(self, t: int, a_rows: torch.Tensor, vectors: torch.Tensor, receivers: torch.Tensor,
                     senders: torch.Tensor, n_receivers: int) -> torch.Tensor:
        """Ar messages of layer t + 1 [V, C, n_receivers, m]: sum over edges of the sender's
        A (rows of all atoms [N, V, C, m]) times the edge factor of ``self.ar[t]``."""
        d = torch.linalg.vector_norm(vectors, dim=-1)
        factor = self.ar[t].edge_factor(d, self.cutoff_fn(d)).permute(2, 0, 1, 3)
        msg = a_rows.index_select(0, senders) * factor
        out = a_rows.new_zeros(n_receivers, *a_rows.shape[1:]).index_add_(0, receivers, msg)
        return out.permute(1, 2, 0, 3)

    def edge_basis(self, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Angular part Y [N, V, K] and radial part R [N, n, K] (cutoff included) of the edge
        basis, from edge vectors in per-receiver slots [N, 3, K] (Angstrom)."""
        d = (vec * vec).sum(dim=1).sqrt()  # [N, K] (vector_norm over a middle axis is slow on CPU)
        unit = vec / (d + 1e-9).unsqueeze(1)
        radial = self.bessel(d, dim=1) * self.cutoff_fn(d).unsqueeze(1)  # [N, n, K]
        return self.angular(unit, dim=1), radial

    def use_compiled_kernels(self) -> CACE:
        """Compile the symmetriser (one fused kernel per pass), the edge basis, the per-tile
        work of the edge sums and the density (edge sums to radial mixing) with torch.compile
        (dynamic shapes); same numbers, for inference (not training). The first call compiles (seconds to a minute); needs a C++ compiler on
        CPU. Returns the model."""
        # kept out of the module tree so that state_dict and model files do not change
        self.__dict__["_compiled_symmetrizer"] = torch.compile(self.symmetrizer, dynamic=True)
        self.__dict__["_compiled_edge_basis"] = torch.compile(self.edge_basis, dynamic=True)
        self.__dict__["_compiled_density"] = torch.compile(self._density, dynamic=True)
        return self

    def forward(self, graph: Graph, *, forces: bool = True, stress: bool = False, training: bool = False,
                uncertainty: bool = False, members: bool = False) -> dict[str, torch.Tensor]:
        """Energy [G], per-atom energies [N], forces [N, 3] and stress [G, 3, 3] (ASE sign).

        ``training=True`` keeps the graph of the derivatives so forces and stress can enter a
        loss. Stress is only meaningful for graphs periodic in all three directions.

        Models with several readout heads carry an uncertainty (calibrated one sigma).
        ``uncertainty=True`` adds ``energy_uncertainty`` [G] and ``energies_uncertainty`` [N]
        (eV: the prediction rigidity of the readout's last layer, :meth:`energy_sigma_rigidity`;
        the heads' spread for files without it), ``energy_members`` [G, K] and, with forces,
        ``forces_uncertainty`` [N] (eV/A, per Cartesian component), estimated at no extra cost from the spread of the per-atom energies
        in each atom's neighbourhood and a part in proportion to the atom's predicted force:
        sqrt((s_z * spread)^2 + (b_z * |F|)^2), s_z and b_z per element from the calibration. ``members=True`` runs one backward pass per head
        instead of one in all: ``energy_members`` [G, K], ``forces_members`` [K, N, 3],
        ``stress_members`` [K, G, 3, 3] when stress is asked, and the uncertainties of forces
        and stress [G, 3, 3] from the members' spread (the neighbourhood estimate stays as
        ``forces_uncertainty_estimate``).
        """
        if (uncertainty or members) and self.n_heads < 2:
            raise ValueError("this model has one readout head and carries no uncertainty (train it with "
                             "model.n_heads > 1)")
        # edge vectors from the graph's (float64) positions, then cast: float32 models keep full
        # precision for large cells
        vectors = graph.positions[graph.receivers] - graph.positions[graph.senders] + graph.shifts
        vectors = vectors.to(self.embed_sender.dtype)
        need_grad = forces or stress
        if need_grad and not vectors.requires_grad:
            vectors.requires_grad_(True)
        rows = (uncertainty or members) and self.has_rigidity
        eps_heads = self.atomic_energies(graph.species, vectors, graph.receivers, graph.senders,
                                         heads=uncertainty or members, rows=rows)
        eps_heads, last_rows = eps_heads if rows else (eps_heads, None)
        eps = eps_heads.mean(dim=-1) if eps_heads.dim() == 2 else eps_heads
        # E0 is large (~100 eV per atom): energies are accumulated in float64 whatever the dtype
        e0 = self.e0[graph.species]
        energies = eps.to(torch.float64) + e0
        energy = energies.new_zeros(graph.n_graphs).index_add_(0, graph.batch, energies)
        out = {"energy": energy, "energies": energies}
        if uncertainty or members:
            out.update(self._spread(graph, eps_heads.to(torch.float64), e0))  # with graph: a loss may use it
            if last_rows is not None:
                out.update(self.energy_sigma_rigidity(last_rows.detach(), graph.batch, graph.n_graphs))
        if need_grad:
            if members:
                grads = [torch.autograd.grad(eps_heads[:, k].sum(), vectors, retain_graph=training or k + 1 < self.n_heads,
                                             create_graph=training, allow_unused=True)[0]
                         for k in range(self.n_heads)]
                derivs = [self._derivatives(graph, vectors, g, forces, stress) for g in grads]
                for key in derivs[0]:
                    stacked = torch.stack([d[key] for d in derivs])
                    out[key] = stacked.mean(dim=0)
                    out[f"{key}_members"] = stacked
                scale = self.uncertainty_scale[2]
                if forces:
                    out["forces_uncertainty"] = scale * out["forces_members"].to(torch.float64).var(
                        dim=0, correction=0).mean(dim=-1).sqrt()
                if stress:
                    out["stress_uncertainty"] = scale * out["stress_members"].to(torch.float64).std(dim=0, correction=0)
            else:
                (grad,) = torch.autograd.grad(eps.sum(), vectors, create_graph=training, allow_unused=True)
                out.update(self._derivatives(graph, vectors, grad, forces, stress))
        if uncertainty or members:
            spread = out.pop("forces_spread")
            if forces:
                key = "forces_uncertainty_estimate" if members else "forces_uncertainty"
                out[key] = self.force_sigma_estimate(spread, out["forces"], graph.species)
        if not training:
            out = {k: v.detach() for k, v in out.items()}
        return out

    def _spread(self, graph: Graph, eps_heads: torch.Tensor, e0: torch.Tensor) -> dict[str, torch.Tensor]:
        """The heads' energies and the uncertainties that need no derivative, from the per-atom
        energies of every head [N, K] (eV, float64)."""
        scale = self.uncertainty_scale
        energy_members = eps_heads.new_zeros(graph.n_graphs, self.n_heads).index_add_(
            0, graph.batch, eps_heads + e0[:, None])
        var_atoms = eps_heads.var(dim=-1, correction=0)
        # an atom's force moves its own energy and its neighbours': their spreads, summed
        neighbourhood = var_atoms.clone().index_add_(0, graph.senders, var_atoms[graph.receivers])
        return {"energy_members": energy_members,
                "energy_uncertainty": scale[0] * energy_members.std(dim=-1, correction=0),
                "energies_uncertainty": scale[0] * var_atoms.sqrt(),
                "forces_spread": neighbourhood.sqrt()}

    def energy_sigma_rigidity(self, last_rows: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> dict[str, torch.Tensor]:
        """The calibrated energy sigmas from the prediction rigidity of the readout's last layer,
        given the atoms' last-layer rows [N, R] and their graph [N]: ``energy_uncertainty`` [G]
        s0 |(sum_i r_i) B| and ``energies_uncertainty`` [N] s0 |r_i B| (eV)."""
        b = self.energy_rigidity
        totals = last_rows.new_zeros(n_graphs, last_rows.shape[1], dtype=torch.float64).index_add_(
            0, batch, last_rows.to(torch.float64))
        per_atom = (last_rows @ b.to(last_rows.dtype)).to(torch.float64)
        s0 = self.uncertainty_scale[0]
        return {"energy_uncertainty": s0 * (totals @ b).norm(dim=-1), "energies_uncertainty": s0 * per_atom.norm(dim=-1)}

    def force_sigma_estimate(self, spread: torch.Tensor, forces: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """The calibrated neighbourhood force sigma [N] (eV/A) from each atom's raw spread (the
        root of its and its neighbours' energy variances over heads, eV) and predicted forces
        [N, 3] (eV/A): sqrt((s1 s_z spread)^2 + (b_z |F|)^2)."""
        spread_part = self.uncertainty_scale[1] * self.estimate_element_scale[species] * spread
        force_part = self.estimate_force_fraction[species] * forces.detach().to(torch.float64).norm(dim=-1)
        return torch.sqrt(spread_part.square() + force_part.square())

    @staticmethod
    def _derivatives(graph: Graph, vectors: torch.Tensor, grad: torch.Tensor | None, forces: bool,
                     stress: bool) -> dict[str, torch.Tensor]:
        """Forces [N, 3] and stress [G, 3, 3] from dE/d(edge vectors) [E, 3]."""
        out = {}
        if grad is None:
            grad = torch.zeros_like(vectors)
        if forces:
            n = graph.positions.shape[0]
            f = grad.new_zeros(n, 3).index_add_(0, graph.senders, grad)
            out["forces"] = f.index_add_(0, graph.receivers, -grad)
        if stress:
            edge_graph = graph.batch[graph.receivers]
            de_deps = grad.new_zeros(graph.n_graphs, 3, 3).index_add_(
                0, edge_graph, grad.unsqueeze(-1) * vectors.unsqueeze(-2))
            de_deps = 0.5 * (de_deps + de_deps.transpose(1, 2))
            volume = torch.linalg.det(graph.cell.to(torch.float64)).abs().to(de_deps.dtype)
            out["stress"] = de_deps / volume[:, None, None]
        return out
