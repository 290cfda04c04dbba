"""Smooth cutoff and switching functions."""

import torch


def polynomial_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """f(r) = 1 - 10x³ + 15x⁴ - 6x⁵ with x = r/cutoff, and 0 beyond the cutoff.

    f(0) = 1; f, f' and f'' vanish at the cutoff, so energies and forces are
    continuous (and force constants too) when an atom crosses it.
    """
    x = torch.clamp(r / cutoff, max=1.0)
    return 1.0 + x**3 * (-10.0 + x * (15.0 - 6.0 * x))


def smooth_switch(r: torch.Tensor, r_on: torch.Tensor, r_off: torch.Tensor) -> torch.Tensor:
    """1 below ``r_on``, 0 above ``r_off``, C² polynomial in between."""
    x = torch.clamp((r - r_on) / (r_off - r_on), min=0.0, max=1.0)
    return 1.0 + x**3 * (-10.0 + x * (15.0 - 6.0 * x))
