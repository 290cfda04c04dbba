"""How far to trust a prediction: calibration figures of predicted spreads."""

from mlipkit.uncertainty.calibration import (
    fit_interval_table,
    fit_std_scale,
    uncertainty_metrics,
)

__all__ = ["fit_interval_table", "fit_std_scale", "uncertainty_metrics"]
