"""cace_calc: Cartesian Atomic Cluster Expansion potentials for ASE, i-PI and analysis."""

from importlib.metadata import PackageNotFoundError, version

from .calculator import CACECalculator
from .checkpoint import available_models, load_model, save_model
from .convert import convert_original
from .model import CACE, CACEConfig

try:
    __version__ = version("cace-calc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "CACE",
    "CACECalculator",
    "CACEConfig",
    "available_models",
    "convert_original",
    "load_model",
    "save_model",
]
