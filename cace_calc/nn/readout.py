"""Per-atom energy readout: K heads, each an MLP with SiLU between layers plus an optional
linear term. One head is the plain CACE readout; several heads are a shallow ensemble whose
mean is the prediction and whose spread is the uncertainty."""

import torch


class Readout(torch.nn.Module):
    """eps_ik = MLP_k(x_i) + Linear_k(x_i), in eV. Input [N, F]; output [N, K].

    ``hidden`` lists the hidden widths; every layer has a bias and the last one is linear. The
    heads' weights are stacked (``weight_l`` [K, in, out], ``bias_l`` [K, out], ``linear_weight``
    [F, K], ``linear_bias`` [K]) so all heads run in one matrix product per layer.
    """

    def __init__(self, n_features: int, hidden: list[int], add_linear: bool = True, n_heads: int = 1):
        super().__init__()
        self.widths = [n_features, *hidden, 1]
        self.n_heads = n_heads
        for k in range(len(self.widths) - 1):
            w_in, w_out = self.widths[k], self.widths[k + 1]
            bound = 1.0 / w_in**0.5  # torch.nn.Linear's default initialisation
            self.register_parameter(f"weight_{k}", torch.nn.Parameter(
                torch.empty(n_heads, w_in, w_out, dtype=torch.float64).uniform_(-bound, bound)))
            self.register_parameter(f"bias_{k}", torch.nn.Parameter(
                torch.empty(n_heads, w_out, dtype=torch.float64).uniform_(-bound, bound)))
        self.add_linear = add_linear
        if add_linear:
            bound = 1.0 / n_features**0.5
            self.linear_weight = torch.nn.Parameter(
                torch.empty(n_features, n_heads, dtype=torch.float64).uniform_(-bound, bound))
            self.linear_bias = torch.nn.Parameter(torch.empty(n_heads, dtype=torch.float64).uniform_(-bound, bound))

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, k = x.shape[0], self.n_heads
        w0 = self.weight_0
        # first layer of every head in one product: [n, F] @ [F, K * out]
        h = (x @ w0.permute(1, 0, 2).reshape(w0.shape[1], -1)).view(n, k, -1) + self.bias_0
        for layer in range(1, self.n_layers):
            h = torch.nn.functional.silu(h)
            h = torch.einsum("nki,kio->nko", h, getattr(self, f"weight_{layer}")) + getattr(self, f"bias_{layer}")
        out = h.squeeze(-1)
        if self.add_linear:
            out = out + x @ self.linear_weight + self.linear_bias
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # model files written before the heads were stacked hold torch.nn.Linear layers
        # (mlp.{2l}.weight [out, in]) and linear.weight [1, F]: one head, restacked here
        for layer in range(self.n_layers):
            for kind in ("weight", "bias"):
                old = state_dict.pop(f"{prefix}mlp.{2 * layer}.{kind}", None)
                if old is not None:
                    state_dict[f"{prefix}{kind}_{layer}"] = (old.T if kind == "weight" else old).unsqueeze(0)
        old_w = state_dict.pop(f"{prefix}linear.weight", None)
        if old_w is not None:
            state_dict[f"{prefix}linear_weight"] = old_w.T
            state_dict[f"{prefix}linear_bias"] = state_dict.pop(f"{prefix}linear.bias")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
