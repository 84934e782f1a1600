"""Per-atom energy readout: the CACE readout (an MLP with SiLU between layers plus an optional
linear term) and, for models that carry an uncertainty, K deviation heads: small MLPs whose
outputs, centred over the heads, are added to it. Member k predicts base + (d_k - mean_j d_j),
so the members' mean is the base readout exactly: adding heads to a trained model leaves its
predictions as they were, and the heads' spread is the uncertainty of the forces. The readout's
last-layer rows (what its energy is linear in) give the prediction rigidity of the energy."""

import torch


def _stacked_mlp(module: torch.nn.Module, prefix: str, widths: list[int], n_heads: int) -> None:
    """Register the weights of ``n_heads`` MLPs of ``widths`` on ``module``, stacked per layer:
    ``{prefix}weight_l`` [K, in, out] and ``{prefix}bias_l`` [K, out] (torch.nn.Linear's
    default initialisation)."""
    for k in range(len(widths) - 1):
        bound = 1.0 / widths[k] ** 0.5
        module.register_parameter(f"{prefix}weight_{k}", torch.nn.Parameter(
            torch.empty(n_heads, widths[k], widths[k + 1], dtype=torch.float64).uniform_(-bound, bound)))
        module.register_parameter(f"{prefix}bias_{k}", torch.nn.Parameter(
            torch.empty(n_heads, widths[k + 1], dtype=torch.float64).uniform_(-bound, bound)))


def _run_stacked_mlp(module: torch.nn.Module, prefix: str, n_layers: int, x: torch.Tensor,
                     with_hidden: bool = False):
    """[n, F] -> [n, K]: every head of a stacked MLP, the first layer of all in one product.
    ``with_hidden``: also the input of the last (linear) layer [n, K, width] (x itself [n, 1, F]
    for an MLP without hidden layers)."""
    w0 = getattr(module, f"{prefix}weight_0")
    n, k = x.shape[0], w0.shape[0]
    last_in = x.unsqueeze(1)
    h = (x @ w0.permute(1, 0, 2).reshape(w0.shape[1], -1)).view(n, k, w0.shape[2]) + getattr(module, f"{prefix}bias_0")
    for layer in range(1, n_layers):
        last_in = torch.nn.functional.silu(h)
        h = torch.einsum("nki,kio->nko", last_in, getattr(module, f"{prefix}weight_{layer}")) + getattr(
            module, f"{prefix}bias_{layer}")
    return (h.squeeze(-1), last_in) if with_hidden else h.squeeze(-1)


class Readout(torch.nn.Module):
    """eps_ik = MLP(x_i) + Linear(x_i) + d_k(x_i) - mean_j d_j(x_i), in eV. Input [N, F]; output
    [N, K] (K = 1: the plain readout, no deviation heads).

    ``hidden`` lists the hidden widths of the base MLP; every layer has a bias and the last one
    is linear. Deviation heads have one hidden layer of ``hidden[-1]`` units. Weights are stored
    stacked (``weight_l`` [1, in, out], ``dev_weight_l`` [K, in, out], ...).
    """

    def __init__(self, n_features: int, hidden: list[int], add_linear: bool = True, n_heads: int = 1):
        super().__init__()
        self.widths = [n_features, *hidden, 1]
        self.dev_widths = [n_features, hidden[-1] if hidden else 16, 1]
        self.n_heads = n_heads
        _stacked_mlp(self, "", self.widths, 1)
        if n_heads > 1:
            _stacked_mlp(self, "dev_", self.dev_widths, n_heads)
        self.add_linear = add_linear
        if add_linear:
            bound = 1.0 / n_features**0.5
            self.linear_weight = torch.nn.Parameter(
                torch.empty(n_features, 1, dtype=torch.float64).uniform_(-bound, bound))
            self.linear_bias = torch.nn.Parameter(torch.empty(1, dtype=torch.float64).uniform_(-bound, bound))

    @property
    def n_rows(self) -> int:
        """Width of the last-layer rows (:meth:`forward` with ``rows=True``)."""
        return (self.widths[-2] if len(self.widths) > 2 else self.widths[0]) + (
            self.widths[0] if self.add_linear else 0) + 1

    def forward(self, x: torch.Tensor, heads: bool = True, rows: bool = False) -> torch.Tensor:
        """Every member's per-atom energy [n, K]; ``heads=False``: their mean, the readout alone
        [n, 1] (the deviation heads are not evaluated). ``rows=True`` appends each atom's
        last-layer row [n, n_rows]: what the readout's energy is linear in (the base MLP's last
        hidden layer, the linear term's input and 1 for the biases), for the prediction rigidity."""
        out, hidden = _run_stacked_mlp(self, "", len(self.widths) - 1, x, with_hidden=True)  # [n, 1]
        if self.add_linear:
            out = out + x @ self.linear_weight + self.linear_bias
        if heads and self.n_heads > 1:
            dev = _run_stacked_mlp(self, "dev_", len(self.dev_widths) - 1, x)  # [n, K]
            out = out + (dev - dev.mean(dim=-1, keepdim=True))
        if rows:
            parts = [hidden[:, 0], *([x] if self.add_linear else []), x.new_ones(x.shape[0], 1)]
            out = torch.cat([out, *parts], dim=1)
        return out

    def deviation_parameters(self) -> list[torch.nn.Parameter]:
        """The deviation heads' weights (empty for one head): what trains the uncertainty alone."""
        return [p for name, p in self.named_parameters() if name.startswith("dev_")]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # model files written before the readout was stacked hold torch.nn.Linear layers
        # (mlp.{2l}.weight [out, in]) and linear.weight [1, F]: restacked here
        for layer in range(len(self.widths) - 1):
            for kind in ("weight", "bias"):
                old = state_dict.pop(f"{prefix}mlp.{2 * layer}.{kind}", None)
                if old is not None:
                    state_dict[f"{prefix}{kind}_{layer}"] = (old.T if kind == "weight" else old).unsqueeze(0)
        old_w = state_dict.pop(f"{prefix}linear.weight", None)
        if old_w is not None:
            state_dict[f"{prefix}linear_weight"] = old_w.T
            state_dict[f"{prefix}linear_bias"] = state_dict.pop(f"{prefix}linear.bias")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
