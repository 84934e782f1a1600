"""Fitting a CACE model to energies, forces and stress.

Adam with linear warm-up then cosine decay, an exponential moving average (EMA) of the weights
used for validation and for the saved model, gradient-norm clipping, loss weights that change by
epoch. A checkpoint after every epoch lets ``resume=True`` continue a run exactly where it stopped.

Files in the output folder: ``checkpoint.pt`` (to resume), ``model.pt`` (the best EMA model so
far, a normal model file with the recipe and metrics in its metadata), ``log.jsonl`` (one line
per epoch) and ``metrics.json`` (final errors on the validation and test sets).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..calculator import resolve_device, resolve_dtype
from ..checkpoint import save_model
from ..model import CACE, CACEConfig
from .config import LossStage, TrainConfig
from .data import (
    DataError,
    Frame,
    batches,
    describe,
    elements_in,
    fit_e0,
    make_frames,
    mean_neighbours,
    read_structures,
    split_indices,
    zbl_radii_from,
)
from .loss import GPA, energy_nll, evaluate, loss_terms
from .parent import CHILD_OWN, PARENT_MAY_CHANGE, e0_correction, parameter_groups, parent_and_config, start_from_parent

__all__ = ["CHILD_OWN", "PARENT_MAY_CHANGE", "EMA", "TrainResult", "energy_nll", "evaluate", "learning_rate",
           "loss_terms", "stage_at", "train"]



@dataclass
class TrainResult:
    """What :func:`train` returns: the best (EMA) model, its metrics and the output folder."""

    model: CACE
    metrics: dict
    output: Path


class EMA:
    """Exponential moving average of a model's floating-point parameters."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters()}
        self.n_updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.n_updates += 1
        # ramp the decay up during the first steps so early weights do not dominate
        d = min(self.decay, (1 + self.n_updates) / (10 + self.n_updates))
        for k, p in model.named_parameters():
            self.shadow[k].mul_(d).add_(p.detach(), alpha=1 - d)

    def copy_to(self, model: torch.nn.Module) -> None:
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(self.shadow[k])

    def state_dict(self) -> dict:
        return {"shadow": self.shadow, "n_updates": self.n_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
        self.n_updates = int(state["n_updates"])


def stage_at(stages: list[LossStage], epoch: int) -> LossStage:
    """The loss weights in force at ``epoch``."""
    current = stages[0]
    for s in stages:
        if s.from_epoch <= epoch:
            current = s
    return current


def learning_rate(step: int, steps_per_epoch: int, cfg) -> float:
    """Linear warm-up over ``warmup_epochs`` then cosine decay from lr to lr_min."""
    total = cfg.epochs * steps_per_epoch
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (0.01 + 0.99 * step / warm)
    frac = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * frac))


def _load_split(cfg: TrainConfig, elements: list[int] | None, cutoff: float, stress: bool):
    """Train / validation / test frames and the indices (into the train file) of each."""
    d = cfg.data
    images = [a for path in ([d.train] if isinstance(d.train, str) else d.train) for a in read_structures(path)]
    if d.max_structures:
        images = images[: d.max_structures]
    if elements is None:
        elements = elements_in(images)
    n = len(images)
    rng_seed = d.seed
    idx = np.arange(n)
    test_idx = np.array([], dtype=int)
    if d.test is None and d.test_fraction > 0:
        rest, test_idx = split_indices(n, d.test_fraction, rng_seed + 1)
        idx = rest
    if d.valid is None:
        tr, va = split_indices(len(idx), d.valid_fraction, rng_seed)
        train_idx, valid_idx = idx[tr], idx[va]
    else:
        train_idx, valid_idx = idx, np.array([], dtype=int)
    source = d.train if isinstance(d.train, str) else ", ".join(d.train)
    train = make_frames([images[i] for i in train_idx], elements, cutoff, stress=stress, source=source)
    # validation and test frames keep their stress labels even when no loss stage weights stress,
    # so that every run reports its stress errors (a zero weight leaves epoch selection unchanged)
    mk = lambda ims, src: make_frames(ims, elements, cutoff, stress=True, stress_optional=not stress, source=src)
    valid = mk([images[i] for i in valid_idx], source) if d.valid is None else mk(read_structures(d.valid), d.valid)
    test = mk([images[i] for i in test_idx], source) if d.test is None else mk(read_structures(d.test), d.test)
    split = {"train": train_idx.tolist(), "valid": valid_idx.tolist(), "test": test_idx.tolist()}
    for e in d.extra:
        extra = read_structures(e.path)
        train += make_frames(extra, elements, cutoff, stress=stress, source=e.path, weight=e.weight,
                             energy_weight=e.energy_weight, stress_optional=True)  # extras may lack stress
        split.setdefault("extra", []).append({"path": os.path.basename(e.path), "n": len(extra),
                                              "weight": e.weight,
                                              **({"energy_weight": e.energy_weight} if e.energy_weight is not None else {})})
    return elements, train, valid, test, split


def _e0_values(cfg: TrainConfig, frames: list[Frame], elements: list[int]) -> np.ndarray:
    if cfg.e0 == "fit":
        return fit_e0(frames, len(elements))
    from ase.data import atomic_numbers

    e0 = np.zeros(len(elements))
    given = {atomic_numbers[k] if isinstance(k, str) and not k.isdigit() else int(k): float(v)
             for k, v in cfg.e0.items()}
    missing = [z for z in elements if z not in given]
    if missing:
        raise DataError(f"e0 has no value for atomic number(s) {missing}")
    for k, z in enumerate(elements):
        e0[k] = given[z]
    return e0


def _atomic_write(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


PROGRESS_EVERY_S = 10.0  # seconds between progress lines within an epoch when there is no bar


def train(config: TrainConfig | dict | str | os.PathLike, *, resume: bool = False,
          progress: bool | None = None, log=None) -> TrainResult:
    """Fit a CACE model from a recipe (a :class:`TrainConfig`, a dict or a YAML path).

    ``resume=True`` continues from ``<output>/checkpoint.pt``. ``progress``: True shows a
    progress bar per epoch; None (default) shows it on a terminal and otherwise (a log file, a
    batch job) logs a line with the step and loss every ``PROGRESS_EVERY_S`` seconds within an
    epoch; False shows neither. Returns the best EMA model with its metrics.
    """
    log = log or (lambda msg: print(msg, flush=True))
    if isinstance(config, (str, os.PathLike)):
        config = TrainConfig.from_yaml(config)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    cfg, t = config, config.training
    out_dir = Path(cfg.output)
    ckpt_path = out_dir / "checkpoint.pt"
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"cannot resume: {ckpt_path} does not exist")
    if not resume and ckpt_path.is_file():
        raise FileExistsError(f"{out_dir} already holds a run; pass resume=True (--resume) to continue "
                              "it or choose another output folder")
    device, dtype = resolve_device(t.device), resolve_dtype(t.dtype)  # before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t.seed)

    use_stress = any(s.stress > 0 for s in t.loss)
    model_dict = dict(cfg.model)
    elements = model_dict.pop("elements", None)
    if elements is not None:
        from ase.data import atomic_numbers

        elements = [atomic_numbers[e] if isinstance(e, str) else int(e) for e in elements]
    parent = None
    if cfg.init:
        parent, model_dict = parent_and_config(cfg.init, model_dict, elements)
        elements = parent.config.elements
    cutoff = float(model_dict.get("cutoff", CACEConfig.__dataclass_fields__["cutoff"].default))
    t0 = time.time()
    elements, train_frames, valid_frames, test_frames, split = _load_split(cfg, elements, cutoff, use_stress)
    log(f"train: {describe(train_frames)}; validation: {len(valid_frames)}; test: {len(test_frames)} "
        f"({time.time() - t0:.1f} s to read and build neighbour lists)")
    if not valid_frames:
        raise DataError("the validation set is empty")

    if model_dict.get("avg_num_neighbors", "auto") == "auto":
        model_dict["avg_num_neighbors"] = round(mean_neighbours(train_frames), 3)
    if model_dict.get("zbl_radii", "auto") == "auto":
        model_dict["zbl_radii"] = zbl_radii_from(train_frames, len(elements))
    model = CACE(CACEConfig(elements=elements, **model_dict))
    if model.zbl is not None:
        from ase.data import chemical_symbols

        radii = model.config.zbl_radii
        log("ZBL core off from (A): " + ", ".join(
            f"{chemical_symbols[elements[i]]}-{chemical_symbols[elements[j]]} {radii[i][j]:.2f}"
            for i in range(len(elements)) for j in range(i, len(elements))))
    if parent is not None:
        start_from_parent(model, parent)
    if cfg.e0 == "refit":
        delta = e0_correction(model, train_frames)
        with torch.no_grad():
            model.e0.add_(torch.from_numpy(delta))
        log(f"E0 refitted on the training data: parent's E0 + ({', '.join(f'{x:+.4f}' for x in delta)}) eV")
    elif cfg.e0 != "parent":
        e0 = _e0_values(cfg, train_frames, elements)
        with torch.no_grad():
            model.e0.copy_(torch.from_numpy(e0))
    model = model.to(device=device, dtype=dtype).train()
    model.requires_grad_(t.trainable == "all")
    if t.trainable == "heads":
        if model.n_heads < 2:
            raise ValueError("training.trainable: heads needs a model with several heads (model.n_heads > 1)")
        for p in model.readout.deviation_parameters():
            p.requires_grad_(True)
    elif t.trainable == "readout":
        model.readout.requires_grad_(True)
    ema = EMA(model, t.ema_decay)
    optimizer = torch.optim.Adam(parameter_groups(model, t.lr, t.representation_lr), lr=t.lr,
                                 weight_decay=t.weight_decay)
    rng = np.random.default_rng(t.seed)
    start_epoch, step, best, history_best_epoch = 0, 0, math.inf, -1

    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state["model_config"] != model.config.to_dict():
            raise ValueError("cannot resume: the model section of the config differs from the checkpoint's")
        if state["split"] != split:
            raise ValueError("cannot resume: the data or its split differs from the checkpoint's")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        best, history_best_epoch = state["best"], state["best_epoch"]
        log(f"resuming {out_dir} at epoch {start_epoch} (best validation loss {best:.4g} at epoch "
            f"{history_best_epoch})")

    eval_model = copy.deepcopy(model).eval()
    n_params = sum(p.numel() for p in model.parameters())
    steps_per_epoch = math.ceil(len(train_frames) / t.batch_size)
    log(f"model: {n_params} parameters, avg_num_neighbors {model.config.avg_num_neighbors}, "
        f"device {device}, {t.dtype}; {steps_per_epoch} steps per epoch")
    recipe = cfg.to_dict()

    from tqdm import tqdm

    log_path = out_dir / "log.jsonl"
    for epoch in range(start_epoch, t.epochs):
        stage = stage_at(t.loss, epoch)
        if epoch > 0 and stage is not stage_at(t.loss, epoch - 1):
            best = math.inf  # the validation loss changes meaning with the weights
            log(f"epoch {epoch}: loss weights now energy {stage.energy}, forces {stage.forces}, "
                f"stress {stage.stress}")
        weights = {"energy": stage.energy, "forces": stage.forces, "stress": stage.stress,
                   "energy_nll": stage.energy_nll}
        nll = stage.energy_nll > 0
        if nll and model.n_heads < 2:
            raise ValueError("training.loss energy_nll needs a model with several heads (model.n_heads > 1)")
        model.train()
        sums = {"loss": 0.0, "energy": 0.0, "forces": 0.0, "stress": 0.0, **({"energy_nll": 0.0} if nll else {})}
        t_epoch = time.time()
        bar = tqdm(batches(train_frames, t.batch_size, shuffle=True, rng=rng), desc=f"epoch {epoch}",
                   leave=False, disable=(not progress) if progress is not None else None)
        report = progress is None and bar.disable  # no bar (not a terminal): a line now and then
        t_report = t_epoch
        for i, batch in enumerate(bar, 1):
            lr = learning_rate(step, steps_per_epoch, t)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_factor", 1.0)
            terms = loss_terms(model, batch.to(device), use_stress and stage.stress > 0, nll,
                               forces=stage.forces > 0 or (use_stress and stage.stress > 0))
            loss = sum(weights[k] * v for k, v in terms.items())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at epoch {epoch}, step {step}; "
                                         "lower training.lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            ema.update(model)
            step += 1
            sums["loss"] += loss.item()
            for k, v in terms.items():
                sums[k] += v.item()
            bar.set_postfix(loss=f"{loss.item():.3g}")
            if report and i < steps_per_epoch and time.time() - t_report >= PROGRESS_EVERY_S:
                t_report = time.time()
                log(f"epoch {epoch:4d}  step {i}/{steps_per_epoch}  train loss {sums['loss'] / i:.4g}  "
                    f"({t_report - t_epoch:.0f} s, about {(t_report - t_epoch) * (steps_per_epoch / i - 1):.0f} s "
                    "left in this epoch)")
        record = {"epoch": epoch, "step": step, "lr": lr, "time_s": round(time.time() - t_epoch, 2),
                  **{f"train_{k}": v / steps_per_epoch for k, v in sums.items()}}

        last = epoch == t.epochs - 1
        if (epoch + 1) % t.valid_every == 0 or last:
            ema.copy_to(eval_model)
            metrics = evaluate(eval_model, valid_frames, device, t.valid_batch_size)
            vloss = (weights["energy"] * (metrics["energy_rmse_mev_per_atom"] * 1e-3) ** 2
                     + weights["forces"] * (metrics["forces_rmse_mev_per_a"] * 1e-3) ** 2)
            if "stress_rmse_gpa" in metrics:
                vloss += weights["stress"] * (metrics["stress_rmse_gpa"] / GPA) ** 2
            if "energy_nll" in metrics:
                vloss += weights["energy_nll"] * metrics["energy_nll"]
            record.update({f"valid_{k}": v for k, v in metrics.items() if k != "n_structures"},
                          valid_loss=vloss)
            if vloss < best:
                best, history_best_epoch = vloss, epoch
                meta = _metadata(cfg, recipe, epoch, {"valid": metrics}, split, n_params)
                save_model(eval_model, out_dir / "model.pt", metadata=meta)
            msg = (f"epoch {epoch:4d}  lr {lr:.2e}  train loss {record['train_loss']:.4g}  valid E "
                   f"{metrics['energy_rmse_mev_per_atom']:.2f} meV/atom  F {metrics['forces_rmse_mev_per_a']:.1f} meV/A")
            if "stress_rmse_gpa" in metrics:
                msg += f"  S {metrics['stress_rmse_gpa']:.3f} GPa"
            log(msg + f"  ({record['time_s']:.0f} s){'  *' if history_best_epoch == epoch else ''}")
        with open(log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        stop = t.patience is not None and epoch - history_best_epoch >= t.patience and not last
        if stop:
            log(f"stopping early: the validation loss has not improved for {t.patience} epochs (best: epoch "
                f"{history_best_epoch})")
        if (epoch + 1) % t.checkpoint_every == 0 or last or stop:
            _atomic_write({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "ema": ema.state_dict(), "rng": rng.bit_generator.state,
                           "torch_rng": torch.get_rng_state(), "epoch": epoch, "step": step,
                           "best": best, "best_epoch": history_best_epoch,
                           "model_config": model.config.to_dict(), "split": split, "recipe": recipe},
                          ckpt_path)
        if stop:
            break

    from ..checkpoint import load_model

    best_model = load_model(out_dir / "model.pt", device=device, dtype=torch.float64)
    metrics = {"best_epoch": history_best_epoch,
               "valid": evaluate(best_model, valid_frames, device, t.valid_batch_size),
               "test": evaluate(best_model, test_frames, device, t.valid_batch_size)}
    if best_model.n_heads > 1:
        from ..uncertainty import calibrate, calibration_report, fit_rigidity

        metrics["energy_rigidity"] = fit_rigidity(best_model, train_frames, device)
        metrics["uncertainty_scale"] = calibrate(best_model, valid_frames, device)
        metrics["calibration"] = {name: calibration_report(best_model, frames, device)
                                  for name, frames in (("valid", valid_frames), ("test", test_frames)) if frames}
        log(f"uncertainty calibrated on the validation set: factors {metrics['uncertainty_scale']}")
    meta = _metadata(cfg, recipe, history_best_epoch, metrics, split, n_params)
    if "uncertainty_scale" in metrics:
        meta["uncertainty"] = {"forces_threshold_ev_per_a": metrics["uncertainty_scale"]["forces_threshold_ev_per_a"],
                               "calibrated_on": f"validation split ({len(valid_frames)} structures)"}
    save_model(best_model, out_dir / "model.pt", metadata=meta)
    best_model.metadata = meta
    with open(out_dir / "metrics.json", "w") as fh:
        json.dump(metrics, fh, indent=2)
    log(f"best model (epoch {history_best_epoch}) written to {out_dir / 'model.pt'}; "
        f"validation {_short(metrics['valid'])}; test {_short(metrics['test'])}")
    return TrainResult(model=best_model, metrics=metrics, output=out_dir)


def _short(m: dict) -> str:
    if not m:
        return "none"
    s = f"E {m['energy_rmse_mev_per_atom']:.2f} meV/atom, F {m['forces_rmse_mev_per_a']:.1f} meV/A"
    if "stress_rmse_gpa" in m:
        s += f", S {m['stress_rmse_gpa']:.3f} GPa"
    return s + " (RMSE)"


def _metadata(cfg: TrainConfig, recipe: dict, epoch: int, metrics: dict, split: dict, n_params: int) -> dict:
    from .. import __version__

    return {"name": cfg.name, "description": cfg.description, "recipe": recipe, "epoch": epoch,
            "metrics": metrics, "split": split, "n_parameters": n_params,
            "trained_with": f"cace_calc {__version__}, torch {torch.__version__}"}
