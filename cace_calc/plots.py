"""PNG plots of the analysis results, drawn with matplotlib's Agg canvas (no pyplot, no GUI and
no change of the global matplotlib backend)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["plot_bands_dos", "plot_eos", "plot_thermal"]


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def _tex_label(label: str) -> str:
    return "|".join(r"$\Gamma$" if part in ("G", "Γ") else part for part in label.split("|"))


def plot_bands_dos(result, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Phonon bands (THz) along the high-symmetry path beside the total DOS; writes a PNG."""
    fig = _figure((8.0, 4.5))
    ax_b, ax_d = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    for start, stop in result.band_segments:
        ax_b.plot(result.band_distances[start:stop], result.band_frequencies[start:stop], color="C0", lw=1.2)
    for x in result.band_label_distances:
        ax_b.axvline(x, color="0.6", lw=0.6)
    ax_b.axhline(0.0, color="0.3", lw=0.6, ls="--")
    ax_b.set_xticks(result.band_label_distances, [_tex_label(s) for s in result.band_labels])
    ax_b.set_xlim(result.band_distances[0], result.band_distances[-1])
    ax_b.set_ylabel("frequency (THz)")
    fmin, fmax = min(0.0, float(result.band_frequencies.min())), float(result.band_frequencies.max())
    pad = 0.04 * max(fmax - fmin, 1e-3)
    ax_b.set_ylim(fmin - (pad if fmin < 0 else 0.0), fmax + pad)
    if result.dos_frequencies is not None:
        ax_d.plot(result.dos, result.dos_frequencies, color="C1", lw=1.2)
        ax_d.fill_betweenx(result.dos_frequencies, 0.0, result.dos, color="C1", alpha=0.3)
        ax_d.set_xlim(left=0.0)
    ax_d.axhline(0.0, color="0.3", lw=0.6, ls="--")
    ax_d.set_xlabel("DOS (states/THz)")
    ax_d.set_xticks([])
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_thermal(result, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Helmholtz free energy (kJ/mol), entropy and heat capacity Cv (J/K/mol) against
    temperature (K); writes a PNG."""
    fig = _figure((6.0, 4.5))
    ax = fig.subplots()
    t = result.temperatures
    ax.plot(t, result.free_energy, label="F (kJ/mol)")
    ax.plot(t, result.entropy, label="S (J/K/mol)")
    ax.plot(t, result.heat_capacity, label="$C_v$ (J/K/mol)")
    ax.axhline(0.0, color="0.3", lw=0.6)
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("per mole of primitive cells")
    if t[-1] > t[0]:
        ax.set_xlim(t[0], t[-1])
    ax.legend()
    ax.set_title(title or "vibrational thermodynamics")
    return _save(fig, path)


def plot_eos(result, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """E(V) points and the Birch-Murnaghan fit, per atom; writes a PNG."""
    fig = _figure((5.5, 4.2))
    ax = fig.subplots()
    n = result.natoms
    v = np.linspace(result.volumes.min(), result.volumes.max(), 200)
    ax.plot(result.volumes / n, result.energies / n, "o", label="calculated")
    ax.plot(v / n, result.energy(v) / n, "-",
            label=f"Birch-Murnaghan: B0 = {result.b0:.1f} GPa, B0' = {result.b0_prime:.2f}")
    ax.axvline(result.v0 / n, color="0.6", lw=0.6)
    ax.set_xlabel("volume (A$^3$/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)
