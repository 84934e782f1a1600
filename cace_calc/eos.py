"""Birch-Murnaghan equation of state: energies on a volume scan and the third-order E(V) fit."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units

from .bulk import CalcOrModel, check_bulk, evaluate_many, resolve_calculator
from .relax import relax_cell, relax_positions

__all__ = ["EOSResult", "birch_murnaghan_eos", "fit_birch_murnaghan"]


@dataclass
class EOSResult:
    """Third-order Birch-Murnaghan fit of E(V) for the whole cell.

    ``volumes`` (A^3) and ``energies`` (eV) are the scan; ``v0`` (A^3), ``e0`` (eV), ``b0``
    (GPa) and ``b0_prime`` (dimensionless) the fit; ``rms`` (eV) the fit's residual;
    ``natoms`` the number of atoms in the cell; ``atoms`` the (relaxed) reference structure.
    """

    volumes: np.ndarray
    energies: np.ndarray
    v0: float
    e0: float
    b0: float
    b0_prime: float
    rms: float
    natoms: int
    atoms: Atoms | None = field(default=None, repr=False)
    plot_file: str | None = None

    def energy(self, volumes) -> np.ndarray:
        """The fitted energy (eV) at ``volumes`` (A^3)."""
        v = np.asarray(volumes, dtype=float)
        eta = (self.v0 / v) ** (2.0 / 3.0) - 1.0
        b0 = self.b0 * units.GPa
        return self.e0 + 9.0 * self.v0 * b0 / 16.0 * (eta**3 * self.b0_prime + eta**2 * (6.0 - 4.0 * (eta + 1.0)))

    def to_dict(self) -> dict:
        """Plain JSON-ready values (units in the keys)."""
        return {"v0_A3": self.v0, "v0_per_atom_A3": self.v0 / self.natoms, "e0_eV": self.e0,
                "e0_per_atom_eV": self.e0 / self.natoms, "b0_GPa": self.b0, "b0_prime": self.b0_prime,
                "rms_eV": self.rms, "natoms": self.natoms, "volumes_A3": self.volumes.tolist(),
                "energies_eV": self.energies.tolist()}

    def table(self) -> str:
        """A short human-readable summary."""
        return "\n".join([
            "Birch-Murnaghan equation of state",
            f"  V0  = {self.v0:.4f} A^3 ({self.v0 / self.natoms:.4f} A^3/atom)",
            f"  E0  = {self.e0:.6f} eV ({self.e0 / self.natoms:.6f} eV/atom)",
            f"  B0  = {self.b0:.2f} GPa",
            f"  B0' = {self.b0_prime:.3f}",
            (f"  fit rms = {self.rms:.2e} eV over {len(self.volumes)} volumes "
             f"({self.volumes.min():.3f}-{self.volumes.max():.3f} A^3)"),
        ])


def fit_birch_murnaghan(volumes: Sequence[float], energies: Sequence[float]) -> dict[str, float]:
    """Fit E(V) (A^3, eV) with the third-order Birch-Murnaghan form; returns ``v0`` (A^3), ``e0``
    (eV), ``b0`` (GPa), ``b0_prime`` and ``rms`` (eV).

    The form is a cubic polynomial in x = V^(-2/3), so the fit is a linear least-squares fit;
    raises ValueError for fewer than 5 points or when the minimum is outside the scanned range.
    """
    v = np.asarray(volumes, dtype=float)
    e = np.asarray(energies, dtype=float)
    if v.shape != e.shape or v.ndim != 1:
        raise ValueError("volumes and energies must be 1D arrays of the same length")
    if len(v) < 5 or len(np.unique(v)) < 5:
        raise ValueError(f"need at least 5 distinct volumes for a Birch-Murnaghan fit, got {len(np.unique(v))}")
    if not (np.isfinite(v).all() and np.isfinite(e).all() and (v > 0).all()):
        raise ValueError("volumes must be positive and finite, energies finite")
    x = v ** (-2.0 / 3.0)
    poly = np.polynomial.Polynomial.fit(x, e, 3).convert()
    d1, d2, d3 = poly.deriv(1), poly.deriv(2), poly.deriv(3)
    roots = [r.real for r in d1.roots() if abs(r.imag) < 1e-12 and r.real > 0 and d2(r.real) > 0]
    roots = [r for r in roots if x.min() <= r <= x.max()]
    if not roots:
        raise ValueError("the E(V) minimum lies outside the scanned volumes "
                         f"({v.min():.3f}-{v.max():.3f} A^3); relax the structure or widen the range")
    x0 = min(roots, key=lambda r: poly(r))
    v0 = x0 ** -1.5
    # derivatives of E with respect to V at V0 (dE/dx = 0 there)
    xv, xvv = -2.0 / 3.0 * v0 ** (-5.0 / 3.0), 10.0 / 9.0 * v0 ** (-8.0 / 3.0)
    evv = d2(x0) * xv**2
    evvv = d3(x0) * xv**3 + 3.0 * d2(x0) * xv * xvv
    b0 = v0 * evv
    b0_prime = -1.0 - v0**2 * evvv / b0
    rms = float(np.sqrt(np.mean((poly(x) - e) ** 2)))
    return {"v0": float(v0), "e0": float(poly(x0)), "b0": float(b0 / units.GPa), "b0_prime": float(b0_prime),
            "rms": rms}


def birch_murnaghan_eos(atoms: Atoms, calc_or_model: CalcOrModel, *, n_points: int = 11,
                        max_strain: float = 0.03, relax: bool = True, relax_internal: bool = True,
                        fmax: float = 1e-3, plot: str | os.PathLike | None = None, device: str = "auto",
                        dtype: str = "float64", batch: bool = True, progress: bool = False) -> EOSResult:
    """E(V) scan and third-order Birch-Murnaghan fit.

    The (optionally cell-relaxed, ``fmax`` in eV/A) cell is scaled isotropically by linear
    factors evenly spaced in [1 - max_strain, 1 + max_strain] (``n_points`` volumes);
    with ``relax_internal`` the positions are relaxed at each volume where a force exceeds
    ``fmax``. ``plot`` writes a PNG of the points and the fit. ``calc_or_model`` is an ASE
    calculator or a model name/file (then a CACECalculator on ``device`` in ``dtype``).
    Energies of all volumes are computed in one batched call for a CACE calculator.
    """
    check_bulk(atoms)
    if n_points < 5:
        raise ValueError(f"n_points must be at least 5, got {n_points}")
    if not 0 < max_strain < 0.2:
        raise ValueError(f"max_strain must be in (0, 0.2), got {max_strain}")
    calc = resolve_calculator(calc_or_model, device=device, dtype=dtype)
    log = print if progress else None
    ref = relax_cell(atoms, calc, fmax=fmax) if relax else atoms.copy()
    ref.set_constraint()
    images = []
    for s in np.linspace(1.0 - max_strain, 1.0 + max_strain, n_points):
        at = ref.copy()
        at.set_cell(ref.cell[:] * s, scale_atoms=True)
        images.append(at)
    results = evaluate_many(images, calc, ("energy", "forces"), batch=batch, progress=log)
    energies = []
    for at, res in zip(images, results):
        if relax_internal and np.linalg.norm(res["forces"], axis=1).max() > fmax:
            relaxed = relax_positions(at, calc, fmax=fmax)
            energies.append(relaxed.get_potential_energy())
        else:
            energies.append(float(res["energy"]))
    volumes = np.array([at.get_volume() for at in images])
    fit = fit_birch_murnaghan(volumes, energies)
    result = EOSResult(volumes=volumes, energies=np.array(energies), natoms=len(ref), atoms=ref, **fit)
    if plot is not None:
        from .plots import plot_eos

        result.plot_file = str(plot_eos(result, plot))
    return result
