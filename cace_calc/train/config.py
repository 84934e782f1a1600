"""The training recipe: one YAML file (or dict) with sections data, model, e0, training, output.

Example::

    data:
      train: water.xyz          # extended XYZ with energy, forces (and stress)
      valid: null               # a separate file, or null to split off valid_fraction
      valid_fraction: 0.05
      test_fraction: 0.10       # held out: never trained on, never used to pick the model
      seed: 0
      extra:                    # more training structures, e.g. labelled by another potential:
        - {path: snap.xyz, weight: 0.3}   # all trained on, loss terms scaled by weight
    model:                      # CACEConfig fields; elements default to those in the data,
      cutoff: 5.5               # avg_num_neighbors "auto" = measured on the training set
      l_max: 3
      n_heads: 4                # a shallow ensemble: the model carries an uncertainty
      zbl_radii: auto           # the ZBL core below 0.95x each pair's shortest distance in the
                                # training data (the default; null: no core)
    e0: fit                     # least squares on the training set, or {"H": -13.6, ...} in eV,
                                # or parent (with init: the parent model's), or refit (the
                                # parent's plus a least-squares fit of its residuals: a new
                                # energy reference)
    training:
      epochs: 200
      batch_size: 4
      lr: 0.01
      loss:                     # weights from a given epoch on (energy per atom, forces, stress)
        - {from_epoch: 0, energy: 1.0, forces: 100.0, stress: 0.0}
    output: runs/water
    init: null                  # or a parent model to start from (its architecture, its weights)

Relative paths are taken relative to the YAML file's folder.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class ExtraData:
    """Structures added to the training set only (never to validation or test), with their
    loss terms scaled by ``weight``: e.g. labels from a weaker reference than the main data;
    ``energy_weight`` scales their energy term instead, when given (energies that matter more
    than the forces of the same reference, e.g. defect formation energies)."""

    path: str
    weight: float = 1.0
    energy_weight: float | None = None


@dataclass
class DataSettings:
    """Where the labelled structures come from and how they are split."""

    train: str | list[str]  # one file, or several read one after the other
    valid: str | None = None
    test: str | None = None
    valid_fraction: float = 0.05
    test_fraction: float = 0.0
    seed: int = 0
    max_structures: int | None = None
    extra: list[ExtraData] = field(default_factory=list)


@dataclass
class LossStage:
    """Loss weights from ``from_epoch`` on: energy per atom (eV/atom)^2, forces (eV/A)^2 per
    component, stress (eV/A^3)^2 per component."""

    from_epoch: int = 0
    energy: float = 1.0
    forces: float = 100.0
    stress: float = 0.0
    energy_nll: float = 0.0  # Gaussian negative log-likelihood of energy per atom under the heads' spread


@dataclass
class TrainingSettings:
    """Optimiser, schedule and hardware settings."""

    epochs: int = 100
    batch_size: int = 4
    valid_batch_size: int = 16
    lr: float = 0.01
    lr_min: float = 1e-4
    warmup_epochs: float = 2.0
    weight_decay: float = 0.0
    ema_decay: float = 0.99
    grad_clip: float = 10.0
    loss: list[LossStage] = field(default_factory=lambda: [LossStage()])
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0
    valid_every: int = 1
    checkpoint_every: int = 1
    trainable: str = "all"  # "heads": only the deviation heads train (the uncertainty; predictions unchanged);
    # "readout": only the readout (and heads) train, the representation stays the parent's
    representation_lr: float = 1.0  # the learning rate of everything but the readout, as a factor of lr
    patience: int | None = None  # stop when the validation loss has not improved for this many epochs


@dataclass
class TrainConfig:
    """A full training recipe (see the module docstring)."""

    data: DataSettings
    model: dict = field(default_factory=dict)
    e0: str | dict = "fit"
    training: TrainingSettings = field(default_factory=TrainingSettings)
    output: str = "cace_run"
    name: str = "model"
    description: str = ""
    init: str | None = None  # a parent model (pretrained name or file): its architecture and weights are the start

    @classmethod
    def from_dict(cls, d: dict, base: str | os.PathLike = ".") -> TrainConfig:
        """Build from a dict; relative paths are resolved against ``base``."""
        d = dict(d)
        _check_keys(d, cls, "top level")
        if "data" not in d:
            raise ValueError("the training config needs a 'data' section with at least 'train'")
        data = dict(d.pop("data"))
        _check_keys(data, DataSettings, "data")
        if "train" not in data:
            raise ValueError("data.train (the training file) is missing")
        base = Path(base)
        for key in ("train", "valid", "test"):
            if isinstance(data.get(key), list):
                data[key] = [str(_resolve(p, base)) for p in data[key]]
            elif data.get(key):
                data[key] = str(_resolve(data[key], base))
        extra = []
        for e in data.pop("extra", None) or []:
            _check_keys(e, ExtraData, "data.extra")
            if "path" not in e:
                raise ValueError("every data.extra entry needs a 'path'")
            ew = e.get("energy_weight")
            extra.append(ExtraData(path=str(_resolve(e["path"], base)), weight=float(e.get("weight", 1.0)),
                                   energy_weight=None if ew is None else float(ew)))
        data["extra"] = extra
        training = dict(d.pop("training", {}) or {})
        _check_keys(training, TrainingSettings, "training")
        stages = training.pop("loss", None)
        if stages is not None:
            if isinstance(stages, dict):
                stages = [stages]
            for s in stages:
                _check_keys(s, LossStage, "training.loss")
            training["loss"] = sorted((LossStage(**s) for s in stages), key=lambda s: s.from_epoch)
            if training["loss"][0].from_epoch != 0:
                raise ValueError("the first training.loss stage must start at from_epoch 0")
        if "model" in d:
            from ..model import CACEConfig

            _check_keys(d["model"], CACEConfig, "model")
        if d.get("init") and (os.sep in str(d["init"]) or str(d["init"]).endswith(".pt")):
            d["init"] = str(_resolve(d["init"], base))  # a file; a bare name is a pretrained model
        out = d.pop("output", "cace_run")
        cfg = cls(data=DataSettings(**data), training=TrainingSettings(**training),
                  output=str(_resolve(out, base)), **d)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a YAML recipe; relative paths in it are relative to its folder."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {str(path)!r} does not exist")
        with open(path) as fh:
            try:
                d = yaml.safe_load(fh)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                problem = getattr(e, "problem", None) or type(e).__name__
                raise ValueError(f"{str(path)!r} is not valid YAML{where}: {problem}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{str(path)!r} is not a YAML mapping")  # noqa: TRY004
        return cls.from_dict(d, base=path.parent)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        t = self.training
        if any(not e.weight > 0 or (e.energy_weight is not None and not e.energy_weight >= 0) for e in self.data.extra):
            raise ValueError("data.extra weights must be positive (energy_weight >= 0)")
        if t.epochs < 1 or t.batch_size < 1:
            raise ValueError("training.epochs and training.batch_size must be at least 1")
        if t.lr <= 0 or t.lr_min < 0 or t.lr_min > t.lr:
            raise ValueError("need 0 <= training.lr_min <= training.lr and lr > 0")
        if not 0.0 <= t.ema_decay < 1.0:
            raise ValueError("training.ema_decay must be in [0, 1)")
        if t.dtype not in ("float32", "float64"):
            raise ValueError("training.dtype must be 'float32' or 'float64'")
        if not (isinstance(self.e0, dict) or self.e0 in ("fit", "parent", "refit")):
            raise ValueError("e0 must be 'fit', 'parent' or 'refit' (with init) or a mapping of element to energy in eV")
        if t.patience is not None and t.patience < 1:
            raise ValueError("training.patience must be at least 1 epoch (or null)")
        if t.trainable not in ("all", "heads", "readout"):
            raise ValueError(f"training.trainable must be 'all', 'heads' or 'readout', got {t.trainable!r}")
        if not t.representation_lr > 0:
            raise ValueError(f"training.representation_lr must be positive (a factor of lr), got {t.representation_lr}")
        if self.e0 in ("parent", "refit") and not self.init:
            raise ValueError(f"e0: {self.e0} needs init: (the parent model)")
        if any(s.energy_nll < 0 for s in t.loss):
            raise ValueError("training.loss energy_nll weights must be >= 0")


def _resolve(p: str, base: Path) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(str(p))))
    return p if p.is_absolute() else (base / p)


def _check_keys(d: dict, cls, where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping, got {type(d).__name__}")  # noqa: TRY004
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")
