"""Fine-tuning: adapt a trained model to a user's own labelled structures, keeping its
architecture, with defaults meant to work without tuning.

>>> from cace_calc.train.finetune import finetune
>>> res = finetune("water", ["my_dft.xyz"], output="ft-water")
>>> print(res.table)          # errors before and after, on the validation frames

What it does: the parent's weights are the start; E0 is refitted by least squares on the
parent's residuals (a new DFT set-up usually has another energy reference; with one
composition only the combination that composition fixes is determined, and the minimum-norm
split is used), unless ``keep_e0``; Adam from a small learning rate (1e-3 down to 1e-5, cosine),
EMA of the weights, the best epoch on the validation frames, and an early stop after
``PATIENCE`` epochs without improvement. Stress enters the loss when every structure has one.
Writes ``model.pt`` (metadata naming the parent and the data), ``log.jsonl``, ``metrics.json``
and ``errors.json`` (before/after) to ``output``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .trainer import TrainResult, train

EPOCHS = 100
PATIENCE = 25
LEARNING_RATE = 1e-3
LEARNING_RATE_MIN = 1e-5
BATCH_SIZE = 2
LOSS = {"from_epoch": 0, "energy": 1000.0, "forces": 100.0}
STRESS_WEIGHT = 1e4  # (eV/A^3)^-2: 1 GPa counts like 60 meV/A of force error
REPLAY_WEIGHT = 0.3  # loss weight of the parent's own structures replayed beside the new ones


@dataclass
class FinetuneResult:
    """The fine-tuned model and its run (:class:`TrainResult`), the errors of the parent and of
    the child on the validation frames, and those errors as a text table."""

    run: TrainResult
    before: dict
    after: dict
    table: str


def finetune_recipe(parent: str | os.PathLike, data: list[str | os.PathLike], *, output: str | os.PathLike,
                    epochs: int = EPOCHS, valid_fraction: float = 0.2, device: str = "auto",
                    keep_e0: bool = False, stress: bool = False, seed: int = 0,
                    valid: str | os.PathLike | None = None, trainable: str = "all", representation_lr: float = 1.0,
                    replay: list[str | os.PathLike] | None = None, replay_weight: float = REPLAY_WEIGHT) -> dict:
    """The training recipe of a fine-tune (a dict for :func:`cace_calc.train.train`)."""
    loss = dict(LOSS, stress=STRESS_WEIGHT if stress else 0.0)
    extra = [{"path": str(r), "weight": replay_weight} for r in replay or []]
    return {"name": f"finetuned from {Path(str(parent)).stem if os.sep in str(parent) else parent}",
            "description": f"{parent} fine-tuned on {', '.join(str(d) for d in data)}",
            "init": str(parent), "e0": "parent" if keep_e0 else "refit",
            "data": {"train": [str(d) for d in data], "valid_fraction": valid_fraction, "test_fraction": 0.0,
                     "seed": seed, "valid": None if valid is None else str(valid), "extra": extra},
            "training": {"epochs": epochs, "batch_size": BATCH_SIZE, "lr": LEARNING_RATE, "lr_min": LEARNING_RATE_MIN,
                         "warmup_epochs": 1, "ema_decay": 0.99, "patience": PATIENCE, "loss": [loss],
                         "device": device, "dtype": "float32", "seed": seed, "trainable": trainable,
                         "representation_lr": representation_lr},
            "output": str(output)}


def finetune(parent: str | os.PathLike, data: list[str | os.PathLike], *, output: str | os.PathLike,
             epochs: int = EPOCHS, valid_fraction: float = 0.2, device: str = "auto", keep_e0: bool = False,
             valid: str | os.PathLike | None = None, trainable: str = "all", representation_lr: float = 1.0,
             replay: list[str | os.PathLike] | None = None, replay_weight: float = REPLAY_WEIGHT,
             progress: bool | None = None, log=None) -> FinetuneResult:
    """Fine-tune ``parent`` (a pretrained name or model file) on the labelled structures in the
    ``data`` files (energies and forces, eV and eV/A; stress used when every structure has one);
    ``valid_fraction`` of them pick the best epoch and report the errors (or the structures of
    the file ``valid``, all trained on then). Every structure is checked before anything is
    trained. Returns a :class:`FinetuneResult`.

    ``trainable="readout"`` trains the readout only (the representation stays the parent's);
    ``representation_lr`` scales the representation's learning rate; ``replay`` files hold
    structures of the parent's own data (same DFT set-up and energy reference), trained on
    beside the new ones with loss weight ``replay_weight`` so that the model keeps what it knew."""
    from ase.data import chemical_symbols

    from ..checkpoint import load_model
    from ..evaluate import evaluate_structures, reference_labels
    from .data import DataError, read_structures

    if not data:
        raise DataError("no data files to fine-tune on")
    images = [a for path in data for a in read_structures(path)]
    for k, a in enumerate(images):
        labels = reference_labels(a)
        missing = [q for q in ("energy", "forces") if q not in labels]
        if missing:
            raise DataError(f"structure {k} of {', '.join(map(str, data))} has no {' and no '.join(missing)} label: "
                            "fine-tuning needs energies and forces")
    known = load_model(parent).config.elements
    unknown = sorted({int(z) for a in images for z in a.numbers} - set(known))
    if unknown:
        raise DataError(f"the data holds {', '.join(chemical_symbols[z] for z in unknown)}, which the parent model "
                        f"{str(parent)!r} does not know (it knows {', '.join(chemical_symbols[z] for z in known)}); "
                        "train a new model with cace-calc train")
    stress = all("stress" in reference_labels(a) and a.pbc.all() for a in images)
    if len(images) < 2 and valid is None:
        raise DataError("fine-tuning needs at least 2 labelled structures (one to train on, one to validate)")
    for path in replay or []:
        read_structures(path)  # one-line errors before anything is trained
    recipe = finetune_recipe(parent, list(data), output=output, epochs=epochs, valid_fraction=valid_fraction,
                             device=device, keep_e0=keep_e0, stress=stress, valid=valid, trainable=trainable,
                             representation_lr=representation_lr, replay=replay, replay_weight=replay_weight)
    run = train(recipe, progress=progress, log=log)
    valid = (read_structures(valid) if valid is not None
             else [images[i] for i in run.model.metadata["split"]["valid"]])
    before = evaluate_structures(valid, parent, device="cpu").metrics
    after = evaluate_structures(valid, run.model, device="cpu").metrics
    table = _table(before, after, len(valid))
    (Path(output) / "errors.json").write_text(json.dumps({"valid_structures": len(valid), "before": before,
                                                          "after": after}, indent=1))
    return FinetuneResult(run=run, before=before, after=after, table=table)


def _table(before: dict, after: dict, n: int) -> str:
    rows = [f"errors on the {n} validation structures (RMSE):",
            f"  {'':30s} {'parent':>12s} {'fine-tuned':>12s}"]
    for key, label in (("energy_rmse_mev_per_atom", "energy (meV/atom)"),
                       ("energy_rmse_after_offset_mev_per_atom", "  after removing the offset"),
                       ("forces_rmse_mev_per_a", "forces (meV/A)"), ("stress_rmse_gpa", "stress (GPa)")):
        if key in before and key in after:
            rows.append(f"  {label:30s} {before[key]:12.3f} {after[key]:12.3f}")
    return "\n".join(rows)
