"""An ASE Calculator for any mlipkit Potential."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator as _ASECalculator
from ase.calculators.calculator import all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlipkit.data.convert import from_atoms
from mlipkit.errors import StressUndefined
from mlipkit.models.base import Potential


class Calculator(_ASECalculator):
    """Energy, forces, per-atom energies and (on periodic cells) stress.

    An ensemble or a Bayesian linear model adds ``energy_std`` (eV) and
    ``forces_std`` (eV/Å) to the results.
    Units are ASE's: eV, eV/Å, and eV/Å³ for stress in Voigt order
    (xx, yy, zz, yz, xz, xy) with ASE's sign. The potential's dtype and device
    are used as they are (``pot.double()`` gives float64 evaluation).
    Results are cached by ASE until the atoms change. On a cell periodic in
    all directions the stress is computed with every call, so that optimizers
    with cell filters get it without a second evaluation.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies",
                              "energy_std", "forces_std"]

    def __init__(self, potential: Potential, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(potential, Potential):
            raise TypeError(f"expected an mlipkit Potential, got {type(potential).__name__}")
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(np.all(self.atoms.pbc))
        if "stress" in properties and not periodic:
            raise StressUndefined(
                "stress needs a cell periodic in all three directions; set atoms.pbc = True "
                "with a cell, or do not ask for stress on a molecule or slab"
            )
        batch = from_atoms(self.atoms, dtype=self.potential.dtype)
        out = self.potential(batch, forces=True, stress=periodic)
        energy = float(out["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"].cpu().double().numpy(),
            "energies": out["atomic_energies"].cpu().double().numpy(),
        }
        for key in ("energy_std", "forces_std"):  # ensembles and posteriors report a spread
            if key in out:
                value = out[key].cpu().double().numpy()
                self.results[key] = float(value[0]) if key == "energy_std" else value
        if periodic:
            sigma = out["stress"][0].cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(sigma)
