"""Calibration of a model's uncertainty on labelled structures, and how well it is calibrated.

The energy's sigma is the prediction rigidity of the readout's last layer: :func:`fit_rigidity`
stores B with B B^T = (F^T F + lambda I)^-1, F the training structures' mean last-layer rows
(what the readout's energy is linear in), and a structure's sigma is s0 |(sum_i r_i) B|: small
where the training structures pin the last layer down, large in directions they do not
(far from the data). A model with several readout heads predicts a spread of forces;
:func:`calibrate` removes each head's constant per-element offset from the heads' mean and scales
the energy sigma and the members' force spread so that on a validation set the errors divided by
sigma have unit variance. The neighbourhood force estimate gets, per element, a factor on the spread and a
fraction of the predicted force, sigma^2 = (s_z spread)^2 + (b_z |F|)^2, both by maximum
likelihood (force errors grow with the force; the heads' spread alone ranks them poorly). :func:`calibration_report` measures,
on data never used for that, the coverage of one and two sigma and the Spearman rank
correlation of sigma with |error|. Energies per atom in eV/atom, forces in eV/A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import CACE
from .train.data import Frame, batches



@dataclass
class Residuals:
    """Errors and raw (uncalibrated) sigmas on a set of structures: energy per atom per
    structure [S], force components [3N] with each atom's sigma repeated, both force estimates."""

    energy_error: np.ndarray
    energy_sigma: np.ndarray
    forces_error: np.ndarray
    forces_sigma: np.ndarray          # neighbourhood spread (uncertainty=True, without its force term)
    forces_norm: np.ndarray           # |predicted force| of the atom of each component (eV/A)
    forces_sigma_members: np.ndarray  # spread of the members' forces (members=True)
    groups: np.ndarray                # the structure each force component belongs to [3N]
    species: np.ndarray               # the element index of the atom of each force component [3N]


def residuals(model: CACE, frames: list[Frame], device: torch.device | str = "cpu", batch_size: int = 8) -> Residuals:
    """Errors and sigmas of ``model`` on labelled ``frames``, with the calibration factors the
    model holds set to one (raw spreads)."""
    scale, element_scale = model.uncertainty_scale.clone(), model.estimate_element_scale.clone()
    fraction = model.estimate_force_fraction.clone()
    model.uncertainty_scale.fill_(1.0)
    model.estimate_element_scale.fill_(1.0)
    model.estimate_force_fraction.zero_()
    try:
        parts: dict[str, list[np.ndarray]] = {k: [] for k in Residuals.__dataclass_fields__}
        offset = 0
        for batch in batches(frames, batch_size, shuffle=False):
            batch = batch.to(device)
            out = model(batch.graph, forces=True, uncertainty=True, members=True)
            n = batch.n_atoms.to(torch.float64)
            parts["energy_error"].append(((out["energy"] - batch.energy) / n).cpu().numpy())
            parts["energy_sigma"].append((out["energy_uncertainty"] / n).cpu().numpy())
            parts["forces_error"].append((out["forces"].to(torch.float64) - batch.forces).cpu().numpy().ravel())
            parts["forces_sigma_members"].append(np.repeat(out["forces_uncertainty"].cpu().numpy(), 3))
            parts["forces_sigma"].append(np.repeat(out["forces_uncertainty_estimate"].cpu().numpy(), 3))
            parts["forces_norm"].append(np.repeat(out["forces"].to(torch.float64).norm(dim=-1).cpu().numpy(), 3))
            parts["groups"].append(np.repeat(batch.graph.batch.cpu().numpy() + offset, 3))
            parts["species"].append(np.repeat(batch.graph.species.cpu().numpy(), 3))
            offset += int(batch.graph.n_graphs)
        return Residuals(**{k: np.concatenate(v) for k, v in parts.items()})
    finally:
        model.uncertainty_scale.copy_(scale)
        model.estimate_element_scale.copy_(element_scale)
        model.estimate_force_fraction.copy_(fraction)


def gaussian_scale(error: np.ndarray, sigma: np.ndarray) -> float:
    """The factor on ``sigma`` that makes ``error`` / sigma unit-variance: the maximum-likelihood
    scale for Gaussian errors, sqrt(mean((error / sigma)^2)); it uses every error, so it is
    stable on small validation sets (a quantile of 14 structures would be set by one or two)."""
    ratio = np.asarray(error) / np.maximum(sigma, 1e-30)
    return float(np.sqrt(np.mean(ratio**2)))


def spread_and_force_scales(error: np.ndarray, spread: np.ndarray, force: np.ndarray) -> tuple[float, float]:
    """(s, b) that maximise the Gaussian likelihood of ``error`` under sigma^2 = (s spread)^2 +
    (b force)^2 (arrays of the same shape: force components, each atom's spread and |F|)."""
    from scipy.optimize import minimize

    e2, s2, f2 = (np.asarray(x, dtype=np.float64) ** 2 for x in (error, spread, force))

    def nll(log_ab):
        a2, b2 = np.exp(2 * log_ab)
        var = np.maximum(a2 * s2 + b2 * f2, 1e-300)
        return float(np.mean(np.log(var) + e2 / var))

    start = [np.log(max(gaussian_scale(error, spread), 1e-12)), np.log(1e-2)]
    best = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 4000})
    a, b = np.exp(best.x)
    return float(a), float(b)


def _atomic_energies(model: CACE, graph, **kwargs):
    """:meth:`CACE.atomic_energies` of a graph's atoms (no forces), with ``kwargs`` (heads, rows)."""
    vectors = (graph.positions[graph.receivers] - graph.positions[graph.senders] + graph.shifts).to(
        model.embed_sender.dtype)
    return model.atomic_energies(graph.species, vectors, graph.receivers, graph.senders, **kwargs)


@torch.no_grad()
def center_heads(model: CACE, frames: list[Frame], device: torch.device | str = "cpu", batch_size: int = 8) -> None:
    """Set the heads' per-element offsets: the mean, over the atoms of each element in
    ``frames``, of each head's energy minus the heads' mean (a constant that says nothing about
    the structure); the mean prediction does not change."""
    model.head_offsets.zero_()
    nz = len(model.config.elements)
    sums = torch.zeros(nz, model.n_heads, dtype=torch.float64)
    counts = torch.zeros(nz, dtype=torch.float64)
    for batch in batches(frames, batch_size, shuffle=False):
        g = batch.graph.to(device)
        heads = _atomic_energies(model, g, heads=True).to(torch.float64).cpu()
        sums.index_add_(0, g.species.cpu(), heads - heads.mean(dim=-1, keepdim=True))
        counts.index_add_(0, g.species.cpu(), torch.ones(len(heads), dtype=torch.float64))
    offsets = sums / counts.clamp_min(1.0)[:, None]
    model.head_offsets.copy_(offsets - offsets.mean(dim=-1, keepdim=True))


RIGIDITY_RIDGE = 1e-4  # lambda of the rigidity, relative to the mean diagonal of F^T F
RIGIDITY_STRUCTURES = 2000  # training structures the rigidity is fitted on (every k-th, at most)


@torch.no_grad()
def fit_rigidity(model: CACE, frames: list[Frame], device: torch.device | str = "cpu", batch_size: int = 8) -> dict:
    """Fit the energy's prediction rigidity on the (training) ``frames``: every k-th of them, at
    most RIGIDITY_STRUCTURES; sets ``model.energy_rigidity`` and returns how it was fitted."""
    step = max(1, -(-len(frames) // RIGIDITY_STRUCTURES))
    chosen = frames[::step]
    width = model.readout.n_rows
    gram = torch.zeros(width, width, dtype=torch.float64)
    for batch in batches(chosen, batch_size, shuffle=False):
        g = batch.graph.to(device)
        _, rows = _atomic_energies(model, g, rows=True)
        sums = rows.new_zeros(int(g.n_graphs), width, dtype=torch.float64).index_add_(0, g.batch, rows.to(torch.float64))
        mean = (sums / batch.n_atoms.to(device, torch.float64)[:, None]).cpu()
        gram += mean.T @ mean
    lam = RIGIDITY_RIDGE * float(torch.trace(gram)) / width
    values, vectors_ = torch.linalg.eigh(gram + lam * torch.eye(width, dtype=torch.float64))
    model.energy_rigidity = (vectors_ / values.sqrt()).to(model.e0.device)
    return {"structures": len(chosen), "ridge": lam}


THRESHOLD_FACTOR = 2.0  # MD warns above this times the largest force sigma of the validation set


def calibrate(model: CACE, frames: list[Frame], device: torch.device | str = "cpu") -> dict[str, float]:
    """Set the model's calibration factors from labelled (validation) ``frames``; returns them
    and ``forces_threshold_ev_per_a``: THRESHOLD_FACTOR times the largest calibrated per-atom
    force sigma (the cheap estimate, the one MD watches) on those frames."""
    from ase.data import chemical_symbols

    center_heads(model, frames, device)
    r = residuals(model, frames, device)
    scales = {"energy": gaussian_scale(r.energy_error, r.energy_sigma),
              "forces": gaussian_scale(r.forces_error, r.forces_sigma),
              "forces_members": gaussian_scale(r.forces_error, r.forces_sigma_members)}
    per_element = np.full(len(model.config.elements), scales["forces"])
    fraction = np.zeros(len(model.config.elements))
    for z in np.unique(r.species):  # per element (elements absent: the overall spread factor, no force term)
        k = r.species == z
        per_element[z], fraction[z] = spread_and_force_scales(r.forces_error[k], r.forces_sigma[k], r.forces_norm[k])
    with torch.no_grad():
        model.uncertainty_scale.copy_(torch.tensor([scales["energy"], 1.0, scales["forces_members"]],
                                                   dtype=torch.float64))
        model.estimate_element_scale.copy_(torch.from_numpy(per_element))
        model.estimate_force_fraction.copy_(torch.from_numpy(fraction))
    calibrated = np.hypot(per_element[r.species] * r.forces_sigma, fraction[r.species] * r.forces_norm)
    symbols = [chemical_symbols[z] for z in model.config.elements]
    return {**scales, "forces_per_element": dict(zip(symbols, per_element.tolist())),
            "forces_fraction_per_element": dict(zip(symbols, fraction.tolist())),
            "forces_threshold_ev_per_a": THRESHOLD_FACTOR * float(calibrated.max())}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-d arrays."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def coverage(error: np.ndarray, sigma: np.ndarray, k: float) -> float:
    """Fraction of |error| within k sigma."""
    return float(np.mean(np.abs(error) <= k * sigma))


def calibration_report(model: CACE, frames: list[Frame], device: torch.device | str = "cpu") -> dict:
    """Coverage of one and two sigma and Spearman(sigma, |error|) on labelled ``frames``, with
    the model's calibration factors: energies per structure, force components (per atom sigma),
    for the neighbourhood force estimate and the members' forces."""
    r = residuals(model, frames, device)
    s_e, s_f, s_m = (float(x) for x in model.uncertainty_scale)
    s_z = model.estimate_element_scale.cpu().numpy()[r.species]
    b_z = model.estimate_force_fraction.cpu().numpy()[r.species]
    report = {"n_structures": len(frames)}
    for name, err, sig in (("energy", r.energy_error, s_e * r.energy_sigma),
                           ("forces", r.forces_error, np.hypot(s_f * s_z * r.forces_sigma, b_z * r.forces_norm)),
                           ("forces_members", r.forces_error, s_m * r.forces_sigma_members)):
        # per atom: one sigma for the three components, compared with their RMS error
        if name != "energy":
            err_atom = np.sqrt((err.reshape(-1, 3) ** 2).mean(axis=1))
            rank = spearman(sig[::3], err_atom)
        else:
            rank = spearman(sig, np.abs(err))
        report[name] = {"coverage_1sigma": coverage(err, sig, 1.0), "coverage_2sigma": coverage(err, sig, 2.0),
                        "spearman": rank, "mean_sigma": float(sig.mean()),
                        "rmse": float(np.sqrt(np.mean(err**2)))}
    return report
