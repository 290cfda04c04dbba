"""Training: losses, metrics, the loop, plots."""

from mlipkit.training.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    load_config,
    save_config,
)
from mlipkit.training.metrics import error_metrics, evaluate, predict
from mlipkit.training.plots import learning_curves, parity_plots

__all__ = [
    "RunConfig", "DataConfig", "ModelConfig", "LossConfig", "TrainingConfig",
    "load_config", "save_config",
    "predict", "error_metrics", "evaluate",
    "parity_plots", "learning_curves",
]
