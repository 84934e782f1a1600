"""Elastic constants by stress-strain fits (matscipy) with internal relaxation, Voigt-Reuss-Hill
moduli and the Born stability check.

Units: elastic constants and moduli in GPa (Voigt order xx yy zz yz xz xy, engineering shear
strains), strains dimensionless; stresses follow ASE (eV/A^3, positive is tensile).
:func:`relax_cell` and :func:`birch_murnaghan_eos` are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from .bulk import (
    CalcOrModel,
    check_bulk,
    check_stress,
    evaluate_many,
    lattice_summary,
    resolve_calculator,
)
from .eos import EOSResult, birch_murnaghan_eos
from .relax import relax_cell, relax_positions

__all__ = [
    "EOSResult",
    "ElasticResult",
    "birch_murnaghan_eos",
    "elastic_constants",
    "relax_cell",
    "vrh_moduli",
]

_VOIGT = ("xx", "yy", "zz", "yz", "xz", "xy")


def vrh_moduli(C: np.ndarray) -> dict[str, float]:
    """Voigt, Reuss and Hill bulk (K) and shear (G) moduli, Hill Young's modulus and Poisson
    ratio of a 6x6 Voigt stiffness matrix; same unit as ``C`` (ratio dimensionless). Reuss
    values and those derived from them are NaN when ``C`` is singular."""
    C = np.asarray(C, dtype=float)
    if C.shape != (6, 6):
        raise ValueError(f"C must be 6x6, got shape {C.shape}")
    kv = (C[0, 0] + C[1, 1] + C[2, 2] + 2.0 * (C[0, 1] + C[1, 2] + C[0, 2])) / 9.0
    gv = (C[0, 0] + C[1, 1] + C[2, 2] - (C[0, 1] + C[1, 2] + C[0, 2]) + 3.0 * (C[3, 3] + C[4, 4] + C[5, 5])) / 15.0
    try:
        S = np.linalg.inv(C)
        kr = 1.0 / (S[0, 0] + S[1, 1] + S[2, 2] + 2.0 * (S[0, 1] + S[1, 2] + S[0, 2]))
        gr = 15.0 / (4.0 * (S[0, 0] + S[1, 1] + S[2, 2]) - 4.0 * (S[0, 1] + S[1, 2] + S[0, 2])
                     + 3.0 * (S[3, 3] + S[4, 4] + S[5, 5]))
    except np.linalg.LinAlgError:
        kr = gr = float("nan")
    kh, gh = 0.5 * (kv + kr), 0.5 * (gv + gr)
    denom = 3.0 * kh + gh
    young = 9.0 * kh * gh / denom if denom else float("nan")
    poisson = (3.0 * kh - 2.0 * gh) / (2.0 * denom) if denom else float("nan")
    return {"bulk_voigt": float(kv), "bulk_reuss": float(kr), "bulk_hill": float(kh), "shear_voigt": float(gv),
            "shear_reuss": float(gr), "shear_hill": float(gh), "youngs_hill": float(young),
            "poisson_hill": float(poisson)}


@dataclass
class ElasticResult:
    """Elastic tensor and moduli of one crystal.

    ``C`` and ``C_err`` (6x6, GPa, Voigt) are the stiffness and the standard errors of the
    stress-strain fits; ``strains`` the strain values of each pattern; ``stresses`` (patterns,
    strains, 6; GPa, ASE sign) the stresses the fits used; ``residual_stress`` (GPa) the stress
    of the unstrained reference cell. Moduli (GPa): Voigt/Reuss/Hill bulk and shear, Hill
    Young's modulus; ``poisson_hill`` is dimensionless. ``eigenvalues`` (GPa) of the symmetric
    part of C; ``stable`` is the Born criterion (all eigenvalues positive).
    """

    C: np.ndarray
    C_err: np.ndarray
    strains: np.ndarray
    stresses: np.ndarray = field(repr=False)
    residual_stress: np.ndarray
    symmetry: str
    n_internal_relaxations: int
    bulk_voigt: float
    bulk_reuss: float
    bulk_hill: float
    shear_voigt: float
    shear_reuss: float
    shear_hill: float
    youngs_hill: float
    poisson_hill: float
    eigenvalues: np.ndarray
    stable: bool
    atoms: Atoms | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """Plain JSON-ready values (units in the keys)."""
        d = {"C_GPa": self.C.tolist(), "C_err_GPa": self.C_err.tolist(), "strains": self.strains.tolist(),
             "residual_stress_GPa": self.residual_stress.tolist(), "symmetry": self.symmetry,
             "n_internal_relaxations": self.n_internal_relaxations,
             "eigenvalues_GPa": self.eigenvalues.tolist(), "born_stable": bool(self.stable)}
        for k in ("bulk_voigt", "bulk_reuss", "bulk_hill", "shear_voigt", "shear_reuss", "shear_hill",
                  "youngs_hill"):
            d[f"{k}_GPa"] = getattr(self, k)
        d["poisson_hill"] = self.poisson_hill
        if self.atoms is not None:
            d["formula"] = self.atoms.get_chemical_formula()
            d["natoms"] = len(self.atoms)
            d["cell_A"] = self.atoms.cell[:].tolist()
            d["volume_per_atom_A3"] = self.atoms.get_volume() / len(self.atoms)
        return d

    def table(self) -> str:
        """The tensor with its uncertainty and the moduli as text."""
        head = "Elastic constants (GPa)"
        if self.atoms is not None:
            head += f" of {self.atoms.get_chemical_formula()} ({len(self.atoms)} atoms; {lattice_summary(self.atoms)})"
        lines = [head, "        " + "".join(f"{v:>18s}" for v in _VOIGT)]
        for i in range(6):
            row = "".join(f"{self.C[i, j]:10.2f} +-{self.C_err[i, j]:5.2f}" for j in range(6))
            lines.append(f"  {_VOIGT[i]:4s}  {row}")
        lines += [
            f"  bulk modulus   K: Voigt {self.bulk_voigt:8.2f}  Reuss {self.bulk_reuss:8.2f}  Hill {self.bulk_hill:8.2f}",
            f"  shear modulus  G: Voigt {self.shear_voigt:8.2f}  Reuss {self.shear_reuss:8.2f}  Hill {self.shear_hill:8.2f}",
            f"  Young's modulus (Hill) {self.youngs_hill:.2f} GPa, Poisson ratio (Hill) {self.poisson_hill:.4f}",
            (f"  Born stability: {'stable' if self.stable else 'UNSTABLE'} "
             f"(eigenvalues of C {', '.join(f'{v:.1f}' for v in self.eigenvalues)} GPa)"),
            (f"  residual stress {', '.join(f'{v:.3f}' for v in self.residual_stress)} GPa; "
             f"strains {', '.join(f'{v:g}' for v in self.strains)}; "
             f"{self.n_internal_relaxations} strained cells needed internal relaxation"),
        ]
        return "\n".join(lines)


def _strain_values(delta, n_steps: int) -> np.ndarray:
    if np.ndim(delta) == 0:
        if not 0 < float(delta) <= 0.05:
            raise ValueError(f"delta (the largest strain) must be in (0, 0.05], got {delta}")
        if n_steps < 3:
            raise ValueError(f"n_steps must be at least 3, got {n_steps}")
        return np.linspace(-float(delta), float(delta), n_steps)
    strains = np.asarray(delta, dtype=float)
    if strains.ndim != 1 or len(np.unique(strains)) < 3 or not np.isfinite(strains).all():
        raise ValueError("a list of strains needs at least 3 distinct finite values")
    if np.abs(strains).max() > 0.05:
        raise ValueError(f"strains must be within +-0.05, got {strains.tolist()}")
    return strains


def _strained_cells(ref: Atoms, patterns, strains) -> list[Atoms]:
    """Strained copies of ``ref`` in matscipy's order (pattern by pattern), positions carried along."""
    from matscipy.elasticity import Voigt_6_to_full_3x3_strain

    images = []
    for pattern, _ in patterns:
        for e in strains:
            deformation = np.eye(3) + Voigt_6_to_full_3x3_strain(np.where(pattern == 1, e, 0.0))
            at = ref.copy()
            at.set_cell(ref.cell[:] @ deformation.T, scale_atoms=False)
            at.positions = ref.positions @ deformation.T
            at.info["strain"] = deformation - np.eye(3)
            images.append(at)
    return images


def _slope_error(x: np.ndarray, y: np.ndarray) -> float:
    """Standard error of the least-squares slope of y(x); 0 for an exactly linear or constant y."""
    xc = x - x.mean()
    slope = (xc @ (y - y.mean())) / (xc @ xc)
    resid = y - y.mean() - slope * xc
    return float(np.sqrt(max(resid @ resid, 0.0) / (len(x) - 2) / (xc @ xc)))


def _fit_errors(strain: np.ndarray, stress: np.ndarray, patterns, symmetry: str) -> np.ndarray:
    """6x6 standard errors of the fitted C_ij (units of ``stress``), combined over the fits of
    each independent constant as matscipy does (root mean square). Computed here because
    scipy's linregress returns NaN errors for a stress that is exactly constant (zero by symmetry)."""
    from matscipy.elasticity import Cij_symmetry

    sym, full = Cij_symmetry[symmetry], Cij_symmetry[None]
    errors: dict[int, list[float]] = {}
    for p, (_, fit_pairs) in enumerate(patterns):
        for i, j in fit_pairs:
            errors.setdefault(abs(int(sym[i, j])), []).append(_slope_error(strain[p, :, j], stress[p, :, i]))
    err = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in errors.items()}
    if symmetry.startswith("trigonal") or symmetry == "hexagonal":  # C66 = (C11 - C12) / 2
        err[int(full[5, 5])] = float(np.hypot(err[int(full[0, 0])], err[int(full[0, 1])]))
    out = np.zeros((6, 6))
    for i in range(6):
        for j in range(6):
            if sym[i, j] != 0:
                out[i, j] = err[abs(int(sym[i, j]))]
    return out


def elastic_constants(atoms: Atoms, calc_or_model: CalcOrModel, *, relax: bool = True,
                      delta: float | Sequence[float] = 0.005, n_steps: int = 5, fmax: float = 1e-3,
                      relax_internal: bool = True, symmetry: str = "triclinic", device: str = "auto",
                      dtype: str = "float64", batch: bool = True, progress: bool = False) -> ElasticResult:
    """The 6x6 elastic tensor (GPa) by linear stress-strain fits (matscipy's
    ``fit_elastic_constants``).

    atoms: a fully periodic crystal; calc_or_model: an ASE calculator giving stress or a model
    name/file (then a CACECalculator on ``device`` in ``dtype``). relax: first relax cell and
    positions to ``fmax`` (eV/A). delta: the largest strain; ``n_steps`` strains evenly spaced
    in [-delta, delta] are applied for each strain pattern; or an explicit list of strains.
    relax_internal: relax the positions of every strained cell in which a force exceeds
    ``fmax`` (needed for crystals whose atoms are not all at inversion centres). symmetry:
    matscipy's strain-pattern set (``"triclinic"``: all 6 patterns, no assumption; also
    ``"cubic"``, ``"hexagonal"``, ...). Stresses of all strained cells come from one batched
    call for a CACECalculator. Raises InvalidAtomsError for non-periodic input and
    StressNotAvailableError for a calculator without stress.
    """
    from matscipy.elasticity import (
        fit_elastic_constants,
        full_3x3_to_Voigt_6_strain,
        strain_patterns,
    )

    check_bulk(atoms)
    strains = _strain_values(delta, n_steps)
    if symmetry not in strain_patterns or symmetry is None:
        raise ValueError(f"symmetry must be one of {', '.join(k for k in strain_patterns if k)}, got {symmetry!r}")
    calc = resolve_calculator(calc_or_model, device=device, dtype=dtype)
    log = (lambda msg: print(f"elastic: {msg}", flush=True)) if progress else None
    check_stress(atoms, calc)
    if relax:
        if log:
            log(f"relaxing cell and positions of {atoms.get_chemical_formula()} (fmax {fmax} eV/A)")
        ref = relax_cell(atoms, calc, fmax=fmax)
    else:
        ref = atoms.copy()
        ref.set_constraint()
    ref.calc = None
    patterns = strain_patterns[symmetry]
    images = _strained_cells(ref, patterns, strains)
    if log:
        log(f"{len(images)} strained cells ({len(patterns)} patterns x {len(strains)} strains)")
    results = evaluate_many([ref] + images, calc, ("forces", "stress"), batch=batch, progress=log)
    residual = results[0]["stress"] / units.GPa
    n_relaxed = 0
    for at, res in zip(images, results[1:]):
        stress = res["stress"]
        if relax_internal and np.linalg.norm(res["forces"], axis=1).max() > fmax:
            relaxed = relax_positions(at, calc, fmax=fmax)
            stress = relaxed.get_stress(voigt=True)
            at.positions = relaxed.positions
            n_relaxed += 1
        at.calc = SinglePointCalculator(at, stress=np.asarray(stress, dtype=float))
    if log and n_relaxed:
        log(f"relaxed the positions in {n_relaxed} strained cells")
    C, _ = fit_elastic_constants(images, symmetry=symmetry, N_steps=len(strains), verbose=False, graphics=False)
    C = np.asarray(C) / units.GPa
    shape = (len(patterns), len(strains), 6)
    stresses = np.array([at.calc.results["stress"] for at in images]).reshape(shape) / units.GPa
    voigt_strains = np.array([full_3x3_to_Voigt_6_strain(at.info["strain"]) for at in images]).reshape(shape)
    C_err = _fit_errors(voigt_strains, stresses, patterns, symmetry)
    eig = np.linalg.eigvalsh(0.5 * (C + C.T))
    ref.calc = calc
    return ElasticResult(C=C, C_err=C_err, strains=strains, stresses=stresses, residual_stress=residual,
                         symmetry=symmetry, n_internal_relaxations=n_relaxed, eigenvalues=eig,
                         stable=bool((eig > 0).all()), atoms=ref, **vrh_moduli(C))
