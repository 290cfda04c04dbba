"""An EMT oracle that misbehaves on chosen structures, for the fault tests.

``behaviour`` maps a structure hash to ``raise``, ``hang``, ``die``
(the process exits mid-calculation), ``nan`` or ``flaky`` (raises on the first
call, then works; the first call leaves a marker in ``marker_dir``). Each
finished call appends the structure's hash to ``marker_dir/calls.log``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from mlipkit.active.oracles import structure_hash


class Faulty(Calculator):
    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, behaviour: dict | None = None, marker_dir: str = ".",
                 delay: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.behaviour, self.marker_dir, self.delay = behaviour or {}, Path(marker_dir), delay

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        key = structure_hash(self.atoms)
        mode = self.behaviour.get(key)
        if mode == "raise":
            raise RuntimeError("the reference code crashed")
        if mode == "hang":
            time.sleep(600)
        if mode == "die":
            os._exit(3)
        marker = self.marker_dir / f"{key}.tried"
        if mode == "flaky" and not marker.exists():
            marker.touch()
            raise RuntimeError("transient failure")
        time.sleep(self.delay)
        emt = EMT()
        atoms = self.atoms.copy()
        atoms.calc = emt
        self.results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                        "stress": atoms.get_stress()}
        if mode == "nan":
            self.results["energy"] = np.nan
        with open(self.marker_dir / "calls.log", "a") as log:
            log.write(key + "\n")
