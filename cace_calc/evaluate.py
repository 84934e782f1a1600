"""Evaluate a model on many structures: batched predictions attached to copies of the
structures, and, when the structures carry reference labels, the errors against them.

>>> from cace_calc.evaluate import evaluate_structures, read_structures
>>> res = evaluate_structures(read_structures(["test.xyz"]), "water")
>>> res.metrics["forces_rmse_mev_per_a"]      # when test.xyz has reference forces
>>> ase.io.write("predicted.xyz", res.images)   # predictions, labels kept as ref_*

Units: energy eV, forces eV/A, stress eV/A^3 (ASE sign: positive is tensile). Errors: energy
per atom in meV/atom, force components in meV/A, stress components (3x3) in GPa, as in the
training metrics.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from .calculator import CACECalculator
from .errors import UnsupportedElementError
from .graph import check_atoms
from .model import CACE

__all__ = ["EvalResult", "error_metrics", "evaluate_structures", "read_structures", "reference_labels",
           "select_uncertain"]

OFFSET_DOMINATES = 5.0  # an offset this many times the RMSE left after removing it "dominates"
OFFSET_MIN_MEV = 5.0  # meV/atom: smaller offsets are not worth a word
SELECT_MIN_RMSD = 0.2  # A: frames of the same atoms closer than this (RMS displacement) count as one

# keys a SinglePointCalculator with our results writes to extended XYZ; input values under these
# names are labels (moved to ref_<name>) or would clash with the predictions
_RESULT_KEYS = ("energy", "free_energy", "energies", "forces", "stress")


@dataclass
class EvalResult:
    """What :func:`evaluate_structures` returns.

    images: copies of the input structures, each with a ``SinglePointCalculator`` holding the
        predictions (``energy``, ``free_energy`` eV, ``energies`` eV per atom, ``forces`` eV/A and,
        for fully periodic cells, ``stress`` eV/A^3 Voigt); the input's ``info`` and ``arrays`` are
        kept, its labels renamed ``ref_energy`` / ``ref_forces`` / ``ref_stress``.
    metrics: errors against the labels (see :func:`error_metrics`); empty without labels.
        With uncertainties, also ``uncertainty``: coverage of one and two sigma and the Spearman
        rank correlation of sigma with |error| (energy per structure, forces per atom).
    seconds: wall time of the evaluation.
    """

    images: list[Atoms]
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> str:
        """The errors as a small text table (empty string without labels)."""
        m = self.metrics
        if not m:
            return ""
        lines = [f"errors vs the reference labels ({m['n_structures']} structures):",
                 f"  {'quantity':28s} {'structures':>10s} {'RMSE':>10s} {'MAE':>10s}"]
        for key, label, unit in (("energy", "energy per atom", "meV/atom"), ("forces", "forces", "meV/A"),
                                 ("stress", "stress", "GPa")):
            if f"{key}_n" in m:
                rmse, mae = _pick(m, key, "rmse"), _pick(m, key, "mae")
                digits = 4 if key == "stress" else 2
                lines.append(f"  {label + ' (' + unit + ')':28s} {m[key + '_n']:10d} {rmse:10.{digits}f} "
                             f"{mae:10.{digits}f}")
        if "energy_offset_mev_per_atom" in m:
            offset, rest = m["energy_offset_mev_per_atom"], m["energy_rmse_after_offset_mev_per_atom"]
            lines.append(f"  energy per atom: mean offset {offset:+.2f} meV/atom, RMSE after removing it "
                         f"{rest:.2f} meV/atom")
            if abs(offset) > OFFSET_DOMINATES * max(rest, 1e-3) and abs(offset) > OFFSET_MIN_MEV:
                lines.append("  the energy error is almost all one constant per atom: the labels probably use another "
                             "energy reference (other DFT code, pseudopotentials or settings); compare energy "
                             "differences, or fine-tune the model on them")
        if "uncertainty" in m:
            lines.append(f"uncertainty against the errors:\n  {'quantity':28s} {'within 1 sigma':>15s} "
                         f"{'within 2 sigma':>15s} {'rank corr.':>11s}")
            for key, label in (("energy", "energy per atom"), ("forces", "forces (per atom)")):
                if key in m["uncertainty"]:
                    u = m["uncertainty"][key]
                    lines.append(f"  {label:28s} {u['coverage_1sigma']:15.3f} {u['coverage_2sigma']:15.3f} "
                                 f"{u['spearman']:11.3f}")
        return "\n".join(lines)


def _pick(m: dict, key: str, stat: str) -> float:
    suffix = {"energy": "mev_per_atom", "forces": "mev_per_a", "stress": "gpa"}[key]
    return m[f"{key}_{stat}_{suffix}"]


def read_structures(paths: str | os.PathLike | Sequence[str | os.PathLike], index: str = ":") -> list[Atoms]:
    """All structures (frames ``index``, an ase.io slice string such as ``":"``, ``"-1"`` or
    ``"0:100:10"``) of one or more files in any format ``ase.io.read`` reads.

    A name from ``cace_calc.data.list_structures()`` (e.g. ``water-64``) in place of a path reads
    that shipped structure. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for
    one that cannot be read or holds no structures.
    """
    import ase.io

    from .data import resolve_structure_file

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    images: list[Atoms] = []
    for path in paths:
        path = resolve_structure_file(path)  # FileNotFoundError naming the shipped structures
        try:
            frames = ase.io.read(path, index=index)
        except (StopIteration, IndexError):  # an integer index past the last frame
            raise ValueError(f"{str(path)!r} has no frame {index!r}: it holds {_count_frames(path)}") from None
        except Exception as e:  # ASE raises many kinds for unreadable files
            raise ValueError(f"cannot read {str(path)!r} (frames {index!r}): {type(e).__name__}: {e}") from e
        frames = frames if isinstance(frames, list) else [frames]
        if not frames:
            raise ValueError(f"no structures in {str(path)!r} for frames {index!r}")
        images += frames
    return images


def _count_frames(path) -> str:
    import ase.io

    try:
        n = sum(1 for _ in ase.io.iread(path, index=":"))
    except Exception:  # only for an error message
        return "fewer frames"
    return f"{n} frame{'s' if n != 1 else ''} (0 to {n - 1}, or -1 for the last)" if n else "no frames"


def reference_labels(atoms: Atoms) -> dict[str, np.ndarray | float]:
    """The reference labels a structure carries: ``energy`` (eV), ``forces`` (eV/A, (N, 3)) and
    ``stress`` (eV/A^3, 3x3), whichever are present.

    A structure written by :func:`evaluate_structures` keeps its labels as ``ref_energy`` /
    ``ref_stress`` in ``atoms.info`` and ``ref_forces`` in ``atoms.arrays``: when any of these is
    present only they are used (its ``energy`` etc. are an earlier model's predictions). Otherwise
    the labels come from the attached calculator (where ``ase.io.read`` puts ``energy``,
    ``forces``, ``stress``), then from ``atoms.info`` / ``atoms.arrays`` under those names.
    Raises ``ValueError`` for labels of the wrong shape.
    """
    info, arrays = atoms.info, atoms.arrays
    if "ref_energy" in info or "ref_stress" in info or "ref_forces" in arrays:
        energy, forces, stress = info.get("ref_energy"), arrays.get("ref_forces"), info.get("ref_stress")
    else:
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        energy = results.get("energy", results.get("free_energy", info.get("energy")))
        forces = results.get("forces", arrays.get("forces"))
        stress = results.get("stress", info.get("stress"))
    labels: dict = {}
    if energy is not None:
        labels["energy"] = float(energy)
    if forces is not None:
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise ValueError(f"reference forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
        labels["forces"] = forces
    if stress is not None:
        stress = np.asarray(stress, dtype=np.float64)
        if stress.shape == (6,):
            stress = voigt_6_to_full_3x3_stress(stress)
        elif stress.shape == (9,):
            stress = stress.reshape(3, 3)
        if stress.shape != (3, 3):
            raise ValueError(f"reference stress has shape {stress.shape}, expected 6 (Voigt), 9 or 3x3")
        labels["stress"] = stress
    return labels


def error_metrics(predictions: Sequence[dict], references: Sequence[dict], n_atoms: Sequence[int]) -> dict:
    """Errors of ``predictions`` (dicts as from ``calculate_batch``) against ``references``
    (dicts as from :func:`reference_labels`), each quantity over the structures that have its
    label (and, for stress, a predicted stress).

    Returns ``n_structures`` and, per labelled quantity, ``<q>_n`` (structures) with RMSE and MAE:
    ``energy_{rmse,mae}_mev_per_atom`` (energy per atom), ``forces_{rmse,mae}_mev_per_a`` (force
    components), ``stress_{rmse,mae}_gpa`` (3x3 stress components); and the energy per atom's
    mean error ``energy_offset_mev_per_atom`` with the RMSE left after removing it,
    ``energy_rmse_after_offset_mev_per_atom`` (a constant offset is another energy reference, not
    a worse model). Empty without labels.
    """
    if not len(predictions) == len(references) == len(n_atoms):
        raise ValueError("predictions, references and n_atoms must have the same length")
    e_err, f_err, s_err = [], [], []
    for pred, ref, n in zip(predictions, references, n_atoms):
        if "energy" in ref:
            e_err.append((pred["energy"] - ref["energy"]) / n * 1e3)
        if "forces" in ref:
            f_err.append((np.asarray(pred["forces"]) - ref["forces"]).ravel() * 1e3)
        if "stress" in ref and "stress" in pred:
            diff = voigt_6_to_full_3x3_stress(np.asarray(pred["stress"])) - ref["stress"]
            s_err.append(diff.ravel() / units.GPa)
    metrics: dict = {}
    for key, suffix, errs in (("energy", "mev_per_atom", e_err), ("forces", "mev_per_a", f_err),
                              ("stress", "gpa", s_err)):
        if errs:
            x = np.concatenate([np.atleast_1d(v) for v in errs])
            metrics[f"{key}_n"] = len(errs)
            metrics[f"{key}_rmse_{suffix}"] = float(np.sqrt(np.mean(x**2)))
            metrics[f"{key}_mae_{suffix}"] = float(np.mean(np.abs(x)))
            if key == "energy":  # a constant per-atom offset (another energy reference) apart
                metrics["energy_offset_mev_per_atom"] = float(np.mean(x))
                metrics["energy_rmse_after_offset_mev_per_atom"] = float(np.std(x))
    if metrics:
        metrics = {"n_structures": len(predictions), **metrics}
    if metrics and "energy_uncertainty" in predictions[0]:
        metrics["uncertainty"] = _uncertainty_metrics(predictions, references, n_atoms)
    return metrics


def _uncertainty_metrics(predictions, references, n_atoms) -> dict:
    """Coverage and rank correlation of the predicted sigmas against the errors."""
    from .uncertainty import coverage, spearman

    out = {}
    pairs = [((p["energy"] - r["energy"]) / n, p["energy_uncertainty"] / n)
             for p, r, n in zip(predictions, references, n_atoms) if "energy" in r]
    if pairs:
        err, sig = np.array(pairs).T
        out["energy"] = {"coverage_1sigma": coverage(err, sig, 1), "coverage_2sigma": coverage(err, sig, 2),
                         "spearman": spearman(sig, np.abs(err)) if len(err) > 2 else float("nan")}
    errs = [(np.asarray(p["forces"]) - r["forces"], p["forces_uncertainty"]) for p, r in zip(predictions, references)
            if "forces" in r]
    if errs:
        err = np.concatenate([e for e, _ in errs])
        sig = np.concatenate([s for _, s in errs])
        out["forces"] = {"coverage_1sigma": coverage(err, sig[:, None], 1),
                         "coverage_2sigma": coverage(err, sig[:, None], 2),
                         "spearman": spearman(sig, np.sqrt((err**2).mean(axis=1)))}
    return out


def select_uncertain(images: Sequence[Atoms], n: int, *, min_rmsd: float = SELECT_MIN_RMSD) -> list[int]:
    """Indices of up to ``n`` structures to label: the most uncertain first (largest per-atom
    force sigma, ``forces_uncertainty`` in ``atoms.arrays`` as :func:`evaluate_structures`
    writes it), skipping any whose atoms sit within ``min_rmsd`` (A, RMS over atoms, minimum
    image) of a structure already chosen: consecutive MD frames are one choice, not n."""
    if n < 1:
        raise ValueError(f"select needs at least 1 structure, got {n}")
    scores = []
    for k, atoms in enumerate(images):
        if "forces_uncertainty" not in atoms.arrays:
            raise ValueError(f"structure {k} has no forces_uncertainty (evaluate with uncertainty=True)")
        scores.append(float(np.max(atoms.arrays["forces_uncertainty"])))
    chosen: list[int] = []
    for k in np.argsort(scores)[::-1]:
        if all(not _same_place(images[k], images[j], min_rmsd) for j in chosen):
            chosen.append(int(k))
        if len(chosen) == n:
            break
    return chosen


def _same_place(a: Atoms, b: Atoms, min_rmsd: float) -> bool:
    """Same atoms (numbers, order) in the same cell, within ``min_rmsd`` A RMS (minimum image)."""
    if len(a) != len(b) or (a.numbers != b.numbers).any() or not np.allclose(a.cell.array, b.cell.array, atol=1e-6):
        return False
    d = a.positions - b.positions
    if a.pbc.any() and a.cell.rank == 3:
        from ase.geometry import find_mic

        d, _ = find_mic(d, a.cell, a.pbc)
    return float(np.sqrt((d**2).sum(axis=1).mean())) < min_rmsd


def _check_structures(images: Sequence[Atoms], elements: Sequence[int] | None) -> None:
    """Raise before any work for a structure that cannot be evaluated, naming it."""
    known = set(elements) if elements is not None else None
    for k, atoms in enumerate(images):
        try:
            check_atoms(atoms)
        except ValueError as e:
            raise type(e)(f"structure {k}: {e}") from None
        if known is not None:
            unknown = sorted(set(np.unique(atoms.numbers).tolist()) - known)
            if unknown:
                raise UnsupportedElementError(
                    f"structure {k} contains {', '.join(chemical_symbols[z] for z in unknown)}, which the "
                    f"model does not know (it knows {', '.join(chemical_symbols[z] for z in elements)})")


def _chunks(images: Sequence[Atoms], max_atoms: int) -> list[list[int]]:
    """Indices of consecutive structures, at most ``max_atoms`` atoms per group (at least one structure)."""
    groups, current, n = [], [], 0
    for k, atoms in enumerate(images):
        if current and n + len(atoms) > max_atoms:
            groups.append(current)
            current, n = [], 0
        current.append(k)
        n += len(atoms)
    if current:
        groups.append(current)
    return groups


def _one_by_one(images: Sequence[Atoms], calc: BaseCalculator) -> list[dict]:
    out = []
    for image in images:
        atoms = image.copy()
        atoms.calc = calc
        res = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        res["free_energy"] = res["energy"]
        if "energies" in getattr(calc, "implemented_properties", ()):
            res["energies"] = atoms.get_potential_energies()
        if atoms.pbc.all() and "stress" in getattr(calc, "implemented_properties", ()):
            res["stress"] = atoms.get_stress()
        out.append(res)
    return out


def _with_predictions(atoms: Atoms, pred: dict, labels: dict) -> Atoms:
    """A copy of ``atoms`` with the predictions attached and its labels renamed ref_*."""
    out = atoms.copy()  # copies info and arrays, drops the calculator
    for key in _RESULT_KEYS:
        out.info.pop(key, None)
        if key in out.arrays and key not in ("numbers", "positions"):
            del out.arrays[key]
    if "energy" in labels:
        out.info["ref_energy"] = labels["energy"]
    if "forces" in labels:
        out.arrays["ref_forces"] = labels["forces"]
    if "stress" in labels:
        out.info["ref_stress"] = full_3x3_to_voigt_6_stress(labels["stress"])
    out.calc = SinglePointCalculator(out, **{k: v for k, v in pred.items() if k in _RESULT_KEYS})
    if "energy_uncertainty" in pred:  # not ASE properties: written as info and per-atom arrays
        out.info["energy_uncertainty"] = pred["energy_uncertainty"]
        out.arrays["energies_uncertainty"] = pred["energies_uncertainty"]
        out.arrays["forces_uncertainty"] = pred["forces_uncertainty"]
    return out


def evaluate_structures(images: Sequence[Atoms], model: str | os.PathLike | CACE | BaseCalculator, *,
                        device: str = "auto", dtype: str = "float64", max_atoms: int | None = None,
                        progress: bool | None = None, uncertainty: bool = False) -> EvalResult:
    """Evaluate ``model`` on ``images`` and compare with their reference labels, if any.

    model: a pretrained name, a model file, a :class:`~cace_calc.CACE` (evaluated with a
        :class:`~cace_calc.CACECalculator` on ``device`` in ``dtype``) or any ASE calculator
        (evaluated one structure at a time).
    max_atoms: atoms per batched model call; None: 20,000 on a GPU, 500 on a CPU (where bigger
        batches are slower). Lower it if memory runs out.
    progress: show a progress bar (None: only on a terminal).
    uncertainty: add each structure's ``energy_uncertainty`` (info, eV) and per-atom
        ``energies_uncertainty`` (eV) and ``forces_uncertainty`` (eV/A) arrays (models with
        several heads), and their calibration against the labels to the metrics. The force
        sigma is the members' (``CACECalculator(..., uncertainty="members")``: one backward
        pass per head, the better ranking of errors; evaluation is not MD).

    Every structure is checked (elements, finite positions, cell) before any work. Returns an
    :class:`EvalResult`; the input structures are not modified.
    """
    from tqdm import tqdm

    images = list(images)
    if not images:
        raise ValueError("no structures to evaluate")
    if max_atoms is not None and max_atoms < 1:
        raise ValueError(f"max_atoms must be at least 1, got {max_atoms}")
    calc = (model if isinstance(model, BaseCalculator)
            else CACECalculator(model, device=device, dtype=dtype, uncertainty="members" if uncertainty else False))
    if uncertainty and not getattr(calc, "uncertainty", False):
        raise ValueError("uncertainty=True needs a CACE model with several heads, or a CACECalculator made "
                         "with uncertainty=True")
    batched = isinstance(calc, CACECalculator)
    if max_atoms is None:
        max_atoms = 20000 if batched and calc.device.type == "cuda" else 500
    _check_structures(images, calc.model.config.elements if batched else None)
    labels = []
    for k, atoms in enumerate(images):
        try:
            labels.append(reference_labels(atoms))
        except ValueError as e:
            raise ValueError(f"structure {k}: {e}") from None

    predictions: list[dict] = []
    t0 = time.perf_counter()
    with tqdm(total=len(images), unit="structure", desc="evaluating",
              disable=(not progress) if progress is not None else None) as bar:
        for group in _chunks(images, max_atoms if batched else 1):
            chunk = [images[k] for k in group]
            if batched:
                predictions += calc.calculate_batch(chunk, max_atoms=max_atoms)
            else:
                predictions += _one_by_one(chunk, calc)
            bar.update(len(chunk))
    seconds = time.perf_counter() - t0
    out = [_with_predictions(a, p, lab) for a, p, lab in zip(images, predictions, labels)]
    metrics = error_metrics(predictions, labels, [len(a) for a in images])
    return EvalResult(images=out, metrics=metrics, seconds=seconds)
