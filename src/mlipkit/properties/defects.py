"""Vacancy formation energies: one site, or every distinct site of an alloy."""

from __future__ import annotations

import logging

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list
from tqdm.auto import tqdm

from mlipkit.errors import InvalidConfig, InvalidStructure
from mlipkit.properties.engines import attach, require_periodic
from mlipkit.properties.relax import relax

log = logging.getLogger(__name__)


def site_classes(atoms: Atoms, radius: float = 5.0, decimals: int = 2) -> list[list[int]]:
    """Groups of sites with the same element and the same neighbour shells
    (elements and distances up to ``radius`` Å, rounded to ``decimals``).

    In a pure crystal all sites of one Wyckoff orbit fall in one group; in a
    random alloy nearly every site is its own group. Radial shells are a
    fingerprint, not a symmetry analysis: two sites that differ only in the
    angular arrangement of identical shells would be merged.
    """
    i, j, d = neighbor_list("ijd", atoms, radius)
    z = atoms.numbers
    groups: dict[tuple, list[int]] = {}
    for site in range(len(atoms)):
        mask = i == site
        shells = tuple(sorted(zip(z[j[mask]].tolist(), np.round(d[mask], decimals).tolist())))
        groups.setdefault((int(z[site]), shells), []).append(site)
    return list(groups.values())


def vacancy_energies(atoms: Atoms, calc, sites=None, chemical_potentials: dict | None = None,
                     fmax: float = 0.01, steps: int = 1000, progress: bool = True) -> dict:
    """Formation energy E_f = E(N−1, relaxed) − E(N) + μ_X of a vacancy on each site.

    ``atoms`` is the perfect supercell at equilibrium (its positions are
    relaxed here, its cell kept). ``sites``: indices to remove; by default one
    representative of every class from :func:`site_classes`, each weighted by
    its class size. ``chemical_potentials`` {symbol: eV per atom}: the
    reservoir the removed atom goes to; by default E(N)/N, the exact choice
    for a pure element (for an alloy pass the elemental bulk energies).
    """
    require_periodic(atoms, "a vacancy (in a supercell: atoms.repeat(...))")
    if len(atoms) < 2:
        raise InvalidStructure("a vacancy needs a supercell of at least 2 atoms")
    if len(atoms) < 32:
        log.warning("a %d-atom supercell: the vacancy interacts with its periodic images; "
                    "use 32 atoms or more", len(atoms))
    perfect = relax(atoms, calc, fmax=fmax, steps=steps)
    e_bulk = perfect.energy
    mu = dict(chemical_potentials or {})
    symbols = set(atoms.get_chemical_symbols())
    if not chemical_potentials:
        if len(symbols) > 1:
            log.warning("no chemical potentials given for an alloy; using E(N)/N = %.4f eV for "
                        "every element", e_bulk / len(atoms))
        mu = {s: e_bulk / len(atoms) for s in symbols}
    missing = symbols - set(mu)
    if missing:
        raise InvalidConfig(f"chemical potentials lack {sorted(missing)}")
    if sites is None:
        classes = site_classes(atoms)  # the input lattice: relaxation would split ties
        sites, weights = [c[0] for c in classes], [len(c) for c in classes]
    else:
        sites = [int(s) for s in sites]
        if not sites:
            raise InvalidConfig("no sites given; list the indices to remove, or give none "
                                "to sample every distinct site")
        if any(not 0 <= s < len(atoms) for s in sites):
            raise InvalidConfig(f"sites must lie in 0..{len(atoms) - 1}")
        weights = [1] * len(sites)
    rows = []
    for site, weight in zip(tqdm(sites, desc="vacancies", disable=not progress), weights):
        defect = perfect.atoms.copy()
        symbol = defect[site].symbol
        del defect[site]
        r = relax(attach(defect, calc), calc, fmax=fmax, steps=steps)
        rows.append({"site": site, "element": symbol, "multiplicity": weight,
                     "formation_energy_eV": r.energy - e_bulk + mu[symbol],
                     "relaxation_eV": r.energy - attach(defect, calc).get_potential_energy(),
                     "steps": r.steps, "converged": r.converged})
    energies = np.array([r["formation_energy_eV"] for r in rows])
    w = np.array(weights, dtype=float)
    mean = float((w * energies).sum() / w.sum())
    return {"atoms": len(atoms), "bulk_energy_eV": e_bulk, "chemical_potentials_eV": mu,
            "sites": rows, "mean_formation_energy_eV": mean,
            "std_formation_energy_eV": float(np.sqrt((w * (energies - mean) ** 2).sum()
                                                     / w.sum())),
            "min_formation_energy_eV": float(energies.min()),
            "max_formation_energy_eV": float(energies.max())}
