"""The training objective and the errors: squared errors of energies, forces and stress, each
structure weighted, and the Gaussian likelihood of the energy under the heads' spread."""

from __future__ import annotations

import numpy as np
import torch

from ..model import CACE
from .data import Batch, Frame, batches

GPA = 160.21766208  # eV/A^3 -> GPa
NLL_VARIANCE_FLOOR = 1e-4**2  # (eV/atom)^2: 0.1 meV/atom, keeps the likelihood finite


def loss_terms(model: CACE, batch: Batch, stress: bool, nll: bool = False, forces: bool = True) -> dict[str, torch.Tensor]:
    """Mean squared errors (with graph), each structure's terms scaled by its weight: energy per
    atom (eV/atom)^2, forces (eV/A)^2 and stress (eV/A^3)^2 over the structures that have a
    stress label; with ``nll`` the Gaussian negative log-likelihood of the energy per atom under
    the heads' spread (the mean held fixed: it trains the spread, the squared errors the mean).
    ``forces=False`` skips the forces (and their backward pass) when their weight is zero."""
    out = model(batch.graph, forces=forces, stress=stress, training=True, uncertainty=nll)
    n = batch.n_atoms.to(torch.float64)
    w = batch.weight
    w_energy = w if batch.energy_weight is None else batch.energy_weight
    terms = {"energy": (w_energy * ((out["energy"] - batch.energy) / n) ** 2).mean()}
    if forces:
        w_atom = w[batch.graph.batch][:, None]
        terms["forces"] = (w_atom * (out["forces"].to(torch.float64) - batch.forces) ** 2).mean()
    if stress and batch.stress is not None and bool(batch.has_stress.any()):
        diff = (out["stress"].to(torch.float64) - batch.stress)[batch.has_stress]
        terms["stress"] = (w[batch.has_stress][:, None, None] * diff**2).mean()
    if nll:
        terms["energy_nll"] = (w * energy_nll(out, batch)).mean()
    return terms


def energy_nll(out: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    """Per structure, the Gaussian negative log-likelihood of the energy per atom under the
    heads' spread (variance floored at NLL_VARIANCE_FLOOR), the mean held fixed."""
    n = batch.n_atoms.to(torch.float64)
    var = (out["energy_members"] / n[:, None]).var(dim=-1, correction=0) + NLL_VARIANCE_FLOOR
    resid = batch.energy / n - (out["energy"] / n).detach()
    return 0.5 * (torch.log(var) + resid**2 / var)


def evaluate(model: CACE, frames: list[Frame], device: torch.device, batch_size: int = 16) -> dict:
    """Errors of ``model`` on ``frames``: RMSE and MAE of energy per atom (meV/atom), forces
    (meV/A) and stress (GPa, frames with a stress label only)."""
    if not frames:
        return {}
    e_err, f_err, s_err, nll = [], [], [], []
    with_stress = any(f.stress is not None for f in frames)
    heads = model.n_heads > 1
    for batch in batches(frames, batch_size, shuffle=False):
        batch = batch.to(device)
        out = model(batch.graph, forces=True, stress=with_stress, uncertainty=heads)
        if heads:
            nll.append(energy_nll(out, batch).cpu().numpy())
        e_err.append(((out["energy"] - batch.energy) / batch.n_atoms).cpu().numpy())
        f_err.append((out["forces"].to(torch.float64) - batch.forces).cpu().numpy().ravel())
        if with_stress and batch.stress is not None:
            d = (out["stress"].to(torch.float64) - batch.stress)[batch.has_stress]
            s_err.append(d.cpu().numpy().ravel())
    e, f = np.concatenate(e_err) * 1e3, np.concatenate(f_err) * 1e3
    res = {"n_structures": len(frames), "energy_rmse_mev_per_atom": _rmse(e),
           "energy_mae_mev_per_atom": float(np.abs(e).mean()), "forces_rmse_mev_per_a": _rmse(f),
           "forces_mae_mev_per_a": float(np.abs(f).mean())}
    if s_err:
        s = np.concatenate(s_err) * GPA
        res.update(stress_rmse_gpa=_rmse(s), stress_mae_gpa=float(np.abs(s).mean()))
    if nll:
        res["energy_nll"] = float(np.concatenate(nll).mean())
    return res


def _rmse(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))
