"""Surface energies from relaxed slabs, converged in thickness."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import surface
from tqdm.auto import tqdm

from mlipkit.errors import InvalidConfig
from mlipkit.properties.engines import attach, require_periodic
from mlipkit.properties.relax import relax

J_PER_M2 = 16.02176634  # 1 eV/Å² in J/m²


def surface_energies(bulk: Atoms, calc, miller=(1, 1, 1), layers=(3, 4, 5, 6, 7),
                     vacuum: float = 10.0, fmax: float = 0.01, steps: int = 1000,
                     progress: bool = True) -> dict:
    """γ(n) = (E_slab(n) − N·ε_bulk) / 2A for slabs of n layers (two equal faces).

    ``bulk`` is the equilibrium bulk cell (its energy per atom ε_bulk is
    evaluated here). Slabs come from ASE's ``surface`` (the faces of the
    Miller plane of the given cell), positions relaxed, cell fixed. Also
    reported: γ from a straight-line fit E_slab(n) = 2Aγ + n·E_layer over the
    thicker half of the slabs, which does not depend on ε_bulk and so exposes
    a bulk reference inconsistent with the slabs.
    """
    require_periodic(bulk, "a surface energy")
    layers = sorted(int(n) for n in layers)
    if len(layers) < 2 or layers[0] < 2:
        raise InvalidConfig(f"give at least two slab thicknesses of >= 2 layers, got {layers}")
    if vacuum < 5.0:
        raise InvalidConfig(f"vacuum {vacuum} Å is too thin to separate the faces; use >= 5 Å")
    e_atom = attach(bulk, calc).get_potential_energy() / len(bulk)
    rows = []
    for n in tqdm(layers, desc=f"slabs {miller}", disable=not progress):
        slab = surface(bulk, miller, n, vacuum=vacuum, periodic=False)
        area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
        unrelaxed = attach(slab, calc).get_potential_energy()
        r = relax(slab, calc, fmax=fmax, steps=steps)
        gamma = (r.energy - len(slab) * e_atom) / (2 * area)
        rows.append({"layers": n, "atoms": len(slab), "area_A2": area,
                     "slab_energy_eV": r.energy, "surface_energy_eV_A2": gamma,
                     "surface_energy_J_m2": gamma * J_PER_M2,
                     "unrelaxed_surface_energy_J_m2":
                         (unrelaxed - len(slab) * e_atom) / (2 * area) * J_PER_M2,
                     "steps": r.steps, "converged": r.converged})
    thick = rows[len(rows) // 2:] if len(rows) >= 4 else rows
    n_fit = np.array([r["layers"] for r in thick])
    e_fit = np.array([r["slab_energy_eV"] for r in thick])
    slope, intercept = np.polyfit(n_fit, e_fit, 1)
    area = rows[-1]["area_A2"]
    atoms_per_layer = rows[-1]["atoms"] / rows[-1]["layers"]
    return {"miller": list(miller), "bulk_energy_per_atom_eV": e_atom, "slabs": rows,
            "surface_energy_J_m2": rows[-1]["surface_energy_J_m2"],
            "fit_surface_energy_J_m2": intercept / (2 * area) * J_PER_M2,
            "fit_energy_per_atom_eV": slope / atoms_per_layer,
            "convergence_J_m2": abs(rows[-1]["surface_energy_J_m2"]
                                    - rows[-2]["surface_energy_J_m2"])}
