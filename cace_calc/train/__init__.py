"""Training CACE models: data loading and checks, the recipe, and the fitting loop."""

from .config import DataSettings, LossStage, TrainConfig, TrainingSettings
from .data import DataError
from .trainer import TrainResult, evaluate, train

__all__ = ["DataError", "DataSettings", "LossStage", "TrainConfig", "TrainResult", "TrainingSettings",
           "evaluate", "train"]
