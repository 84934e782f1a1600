"""Helpers shared by the example scripts (not part of the package, not an example itself)."""

import os
import sys
from pathlib import Path

# The development data (see README, 'Development data'): ../shared next to this checkout, or
# $CACE_SHARED (empty: none). Only convert_original.py and train_small.py need it; the others use
# the structures shipped in cace_calc.data.
if "CACE_SHARED" in os.environ:
    SHARED = Path(os.environ["CACE_SHARED"] or "/nonexistent/cace-shared")
else:
    SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"  # the published CACE models: read from there, never copied
WATER = SHARED / "data" / "water" / "water_pbe0_train.xyz"  # 320 frames of 64 H2O with PBE0 labels


def require_shared(*paths: Path) -> bool:
    """True if all ``paths`` of the development data exist; else says so in one line (stderr)."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"this example needs the development data ({missing[0]} not found): ../shared beside the "
              "checkout or $CACE_SHARED; see README 'Development data'", file=sys.stderr)
    return not missing


def is_fast(args) -> bool:
    """True with ``--fast`` or ``CACE_EXAMPLES_FAST=1``: tiny settings that only check that it runs."""
    return bool(getattr(args, "fast", False)) or os.environ.get("CACE_EXAMPLES_FAST", "") not in ("", "0")


def find_model(model: str, elements: str) -> Path | None:
    """The model file of a pretrained name or a path; None (after saying what to pass) if there is
    none. Examples then exit with status 0 in fast mode (a quick check passes before the
    pretrained models ship), else 1."""
    from cace_calc.checkpoint import resolve_model_path
    from cace_calc.errors import ModelFileError

    try:
        return resolve_model_path(model)
    except ModelFileError as e:
        print(f"cannot run this example: {e}.\nPass --model PATH with a cace_calc model file for {elements} "
              "(e.g. one made by `cace-calc convert` or `cace-calc train`).", file=sys.stderr)
        return None
