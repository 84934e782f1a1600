"""The CACE model: per-atom energies from a graph, and energy, forces and stress from one
forward and one backward pass.

Shapes: N atoms, E edges, n radial functions, m radial channels after mixing, V angular
components, C = N_emb^2 element channels, S invariants. Units: Angstrom and eV.
"""

from __future__ import annotations

import math
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

SLOTS_PER_TILE = 1 << 15  # CPU: per-slot tensors of a tile stay in the allocator's cache
SLOTS_PER_TILE_CUDA = 1 << 21  # GPU: few, large kernels
# systems with more atoms than this recompute, in the backward pass, the symmetriser's products
# (in chunks of this many atoms) and the edge basis' intermediates instead of storing them
RECOMPUTE_ABOVE_ATOMS = 1 << 14


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
        self.readout = Readout(n_node * (cfg.n_layers + 1), cfg.readout_hidden, cfg.readout_linear)

    def _apply(self, fn, recurse=True):
        # keep E0 in float64 when the model is cast (float32 would cost ~1e-5 eV per atom)
        e0 = self.e0
        super()._apply(fn, recurse)
        self.e0 = e0.to(device=self.elements.device, dtype=torch.float64)
        return self

    @property
    def cutoff(self) -> float:
        """Cutoff radius in Angstrom."""
        return float(self.cutoff_fn.cutoff)

    @property
    def atomic_numbers(self) -> list[int]:
        """Atomic numbers the model supports, in embedding order."""
        return list(self.config.elements)

    def atomic_energies(self, species: torch.Tensor, vectors: torch.Tensor, receivers: torch.Tensor,
                        senders: torch.Tensor) -> torch.Tensor:
        """Per-atom energies without E0 [N] (eV) from element indices [N] and edge vectors
        r_e = x_receiver - x_sender + shift [E, 3] (Angstrom)."""
        n_atoms = species.shape[0]
        n_emb, n_ch, n_rbf = self.config.n_embed, self.n_channels, self.config.n_rbf
        theta_s = self.embed_sender
        theta_r = self.embed_receiver if self.embed_receiver is not None else theta_s
        theta_r_nodes = theta_r[species].T[None, None, :, :, None]  # [1, 1, b, N, 1]

        # Node tensors are laid out [V, C, N, m] (angular component, element channel, atom,
        # radial channel): the symmetriser works on views along the leading axis and the radial
        # mixing is one batched matmul over (v, c). Edges sit in per-receiver slots [N, F, K];
        # the angular and radial parts of their basis are computed in tiles of receivers, small
        # enough to stay in the allocator's cache, and kept for the backward pass of the edge
        # sums (nn/edge_sums.py), which forms their products tile by tile in both passes.
        slots = ReceiverSlots(receivers, n_atoms)
        far = vectors.new_tensor([2.0 * self.cutoff + 1.0, 0.0, 0.0])  # empty slots: zero basis
        slot_vectors = slots(vectors, far).transpose(1, 2).contiguous()  # [N, 3, K]
        slot_senders = slots(senders.unsqueeze(-1), senders.new_zeros(1)).view(-1)  # [N * K]
        per_tile = SLOTS_PER_TILE_CUDA if vectors.device.type == "cuda" else SLOTS_PER_TILE
        basis_fn = self.__dict__.get("_compiled_edge_basis", self.edge_basis)
        recompute = n_atoms > RECOMPUTE_ABOVE_ATOMS and slot_vectors.requires_grad
        parts = [checkpoint(basis_fn, v, use_reentrant=False) if recompute else basis_fn(v)
                 for v in slot_vectors.split(max(1, per_tile // slots.k))]
        y_tiles, r_tiles = [p[0] for p in parts], [p[1] for p in parts]
        l_blocks = self.angular.l_blocks
        compiled = "_compiled_edge_basis" in self.__dict__

        def sums_over_edges(node_weights: torch.Tensor) -> torch.Tensor:
            """[N_all, L or 1, F] -> sum_e W[s(e), l(v), f] R[e, n] Y[e, v] per receiver [N, V, n, F]."""
            return edge_sums(node_weights, slot_senders, y_tiles, r_tiles, l_blocks, compiled=compiled)

        def to_nodes(sums: torch.Tensor) -> torch.Tensor:
            """Edge sums [N, V, n, F] weighted by the sender factor a (F = a) or by a and b
            (F = (a, b)) -> A [V, (a, b), N, n], times the receiver factor theta_r[z_i, b]."""
            sums = sums.permute(1, 3, 0, 2)  # [V, F, N, n]
            sums = sums.reshape(sums.shape[0], n_emb, -1, n_atoms, n_rbf)  # [V, a, b or 1, N, n]
            return (sums * theta_r_nodes).reshape(-1, n_ch, n_atoms, n_rbf)

        def features_of(b: torch.Tensor) -> torch.Tensor:
            """B [S, C, N, m] -> per-atom rows [N, m * S * C] in CACE's (m, s, c) order."""
            return b.permute(2, 3, 0, 1).reshape(n_atoms, -1)

        # layer 0: A0[v, (a, b), i, n] = theta_r[z_i, b] sum_e theta_s[z_s(e), a] R[e, n] Y[e, v]
        a = self.radial_transform(to_nodes(sums_over_edges(theta_s[species].unsqueeze(1))))
        b = self._symmetrize(a)
        features = [b]
        for t in range(self.config.n_layers):
            update = None
            if len(self.bchi):
                w = self.bchi[t](features_of(b)).reshape(n_atoms, -1, n_emb, n_emb)  # [N, L, a, b]
                sender_w = (w * theta_s[species][:, None, :, None]).reshape(n_atoms, -1, n_ch)  # [N, L, C]
                update = self.radial_transform(to_nodes(sums_over_edges(sender_w)))
            if len(self.ar):  # per edge, not in slots: no published model uses Ar messages
                d = torch.linalg.vector_norm(vectors, dim=-1)
                a_rows = a.permute(2, 0, 1, 3)  # [N, V, C, m]
                factor = self.ar[t].edge_factor(d, self.cutoff_fn(d)).permute(2, 0, 1, 3)
                msg = a_rows.index_select(0, senders) * factor
                summed = torch.zeros_like(a_rows).index_add_(0, receivers, msg).permute(1, 2, 0, 3)
                update = summed if update is None else update + summed
            update = update * self.mp_norm
            if len(self.memory):
                update = update + self.memory[t](a)
            a = update
            b = self._symmetrize(a)
            features.append(b)

        x = torch.stack([features_of(b) for b in features], dim=-1).reshape(n_atoms, -1)
        return self.readout(x)

    def edge_basis(self, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Angular part Y [N, V, K] and radial part R [N, n, K] (cutoff included) of the edge
        basis, from edge vectors in per-receiver slots [N, 3, K] (Angstrom)."""
        d = (vec * vec).sum(dim=1).sqrt()  # [N, K] (vector_norm over a middle axis is slow on CPU)
        unit = vec / (d + 1e-9).unsqueeze(1)
        radial = self.bessel(d, dim=1) * self.cutoff_fn(d).unsqueeze(1)  # [N, n, K]
        return self.angular(unit, dim=1), radial

    def use_compiled_kernels(self) -> CACE:
        """Compile the symmetriser (one fused kernel per pass), the edge basis and the per-tile
        work of the edge sums with torch.compile (dynamic shapes); same numbers, for inference
        (not training). The first call compiles (seconds to a minute); needs a C++ compiler on
        CPU. Returns the model."""
        # kept out of the module tree so that state_dict and model files do not change
        self.__dict__["_compiled_symmetrizer"] = torch.compile(self.symmetrizer, dynamic=True)
        self.__dict__["_compiled_edge_basis"] = torch.compile(self.edge_basis, dynamic=True)
        return self

    def _symmetrize(self, a: torch.Tensor) -> torch.Tensor:
        """B = Sym(A) for A [V, C, N, m]; for many atoms, in chunks of atoms whose intermediate
        products are recomputed in the backward pass instead of stored (~50 kB per atom)."""
        sym = self.__dict__.get("_compiled_symmetrizer", self.symmetrizer)
        n_atoms, step = a.shape[2], RECOMPUTE_ABOVE_ATOMS
        if n_atoms <= step or not torch.is_grad_enabled():
            return sym(a)
        # split, not slices: the backward of a slice would fill a full-size gradient per chunk
        return torch.cat([checkpoint(sym, part, use_reentrant=False) for part in a.split(step, dim=2)], dim=2)

    def forward(self, graph: Graph, *, forces: bool = True, stress: bool = False,
                training: bool = False) -> dict[str, torch.Tensor]:
        """Energy [G], per-atom energies [N], forces [N, 3] and stress [G, 3, 3] (ASE sign).

        ``training=True`` keeps the graph of the derivatives so forces and stress can enter a
        loss. Stress is only meaningful for graphs periodic in all three directions.
        """
        # edge vectors from the graph's (float64) positions, then cast: float32 models keep full
        # precision for large cells
        vectors = graph.positions[graph.receivers] - graph.positions[graph.senders] + graph.shifts
        vectors = vectors.to(self.embed_sender.dtype)
        need_grad = forces or stress
        if need_grad and not vectors.requires_grad:
            vectors.requires_grad_(True)
        eps = self.atomic_energies(graph.species, vectors, graph.receivers, graph.senders)
        # E0 is large (~100 eV per atom): energies are accumulated in float64 whatever the dtype
        energies = eps.to(torch.float64) + self.e0[graph.species]
        energy = energies.new_zeros(graph.n_graphs).index_add_(0, graph.batch, energies)
        out = {"energy": energy, "energies": energies}
        if not need_grad:
            return out if training else {k: v.detach() for k, v in out.items()}
        (grad,) = torch.autograd.grad(eps.sum(), vectors, create_graph=training, allow_unused=True)
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
        if not training:
            out = {k: v.detach() for k, v in out.items()}
        return out
