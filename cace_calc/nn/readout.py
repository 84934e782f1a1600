"""Per-atom energy readout: an MLP with SiLU between layers plus an optional linear term."""

import torch


class Readout(torch.nn.Module):
    """eps_i = MLP(x_i) + Linear(x_i), in eV. Input [N, F]; output [N].

    ``hidden`` lists the hidden widths; every layer has a bias and the last one is linear.
    """

    def __init__(self, n_features: int, hidden: list[int], add_linear: bool = True):
        super().__init__()
        widths = [n_features, *hidden, 1]
        layers: list[torch.nn.Module] = []
        for k in range(len(widths) - 1):
            layers.append(torch.nn.Linear(widths[k], widths[k + 1], dtype=torch.float64))
            if k < len(widths) - 2:
                layers.append(torch.nn.SiLU())
        self.mlp = torch.nn.Sequential(*layers)
        self.linear = torch.nn.Linear(n_features, 1, dtype=torch.float64) if add_linear else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mlp(x)
        if self.linear is not None:
            out = out + self.linear(x)
        return out.squeeze(-1)
