"""Model files: one self-describing ``torch.save`` of plain data, readable with
``torch.load(..., weights_only=True)``.

Layout: {"format": "cace_calc.model", "format_version": int, "config": CACEConfig as dict,
"state_dict": tensors, "units": {"energy": "eV", "length": "Angstrom"}, "metadata": dict}.
Pretrained models are folders ``<name>/model.pt`` in the package's ``pretrained`` directory.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from .errors import ModelFileError
from .model import CACE, CACEConfig

FORMAT = "cace_calc.model"
FORMAT_VERSION = 1
UNITS = {"energy": "eV", "length": "Angstrom"}
ALIASES = {"hea": "nbmotaw"}


def save_model(model: CACE, path: str | os.PathLike, *, metadata: dict | None = None) -> Path:
    """Write ``model`` to ``path`` with free-form JSON-like ``metadata`` (data, licence, metrics)."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "units": dict(UNITS),
        "metadata": dict(metadata if metadata is not None else getattr(model, "metadata", {})),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def _pretrained_root():
    return resources.files("cace_calc.pretrained")


def available_models() -> list[str]:
    """Names of the pretrained models shipped with the package (aliases not included)."""
    root = _pretrained_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "model.pt").is_file())


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A model file path from a pretrained name (or alias), a path, or a folder holding
    ``model.pt`` (as ``cace-calc train`` writes; a pretrained name wins over a folder of the same
    name in the working directory); raises ModelFileError."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    candidate = _pretrained_root() / name / "model.pt"
    if candidate.is_file():
        return Path(str(candidate))
    if p.is_dir():  # a training run's or a pretrained model's folder stands for its model.pt
        if (p / "model.pt").is_file():
            return p / "model.pt"
        raise ModelFileError(f"model {str(name_or_path)!r} is a directory, not a model file, and holds no "
                             "model.pt")
    if p.suffix or os.sep in str(name_or_path):
        raise ModelFileError(f"model file {str(name_or_path)!r} does not exist")
    names = available_models()
    raise ModelFileError(
        f"no model file or pretrained model named {str(name_or_path)!r}; pretrained models: "
        f"{', '.join(names) if names else 'none installed'}")


def read_model_file(path: str | os.PathLike) -> dict:
    """The raw content of a model file, checked for format and version."""
    not_model = (f"{str(path)!r} is not a cace_calc model file (original CACE models must be converted "
                 "first: cace-calc convert)")
    try:
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"  # every torch.save file since torch 1.6
    except FileNotFoundError:
        raise ModelFileError(f"model file {str(path)!r} does not exist") from None
    except OSError as e:
        raise ModelFileError(f"cannot read model file {str(path)!r}: {e}") from None
    if not is_zip:
        raise ModelFileError(f"cannot read model file {str(path)!r}: it is corrupt or not a cace_calc model "
                             "(not a torch zip archive; original CACE models must be converted first: "
                             "cace-calc convert)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's message runs over many lines and advises weights_only=False: keep its reason only
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0] if lines else "")
        raise ModelFileError(f"cannot read model file {str(path)!r}: it is corrupt or not a cace_calc model "
                             f"({type(e).__name__}: {reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(not_model)
    version = payload.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{str(path)!r} has an invalid model format version {version!r} "
                             "(expected an integer from 1); the file is corrupt")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} has model format version {version}, newer than this cace_calc reads "
            f"(up to {FORMAT_VERSION}); upgrade cace-calc")
    return payload


def load_model(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float64) -> CACE:
    """Load a model by pretrained name or file path, in eval mode on ``device`` in ``dtype``.

    Its metadata is available as ``model.metadata``.
    """
    path = resolve_model_path(name_or_path)
    payload = read_model_file(path)
    try:
        model = CACE(CACEConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"model file {str(path)!r} is inconsistent: {e}") from e
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelFileError(f"model file {str(path)!r} is corrupt: non-finite (NaN or inf) values in "
                             f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    model.metadata = dict(payload.get("metadata", {}))
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()
