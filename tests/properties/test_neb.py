"""Climbing-image NEB: a Cu vacancy hop with EMT, the validation report, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.mixing import LinearCombinationCalculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import find_mic
from ase.io import read, write
from ase.mep import NEB
from ase.optimize import BFGS, FIRE

from mlipkit.cli import main
from mlipkit.errors import PathMismatch
from mlipkit.properties.neb import (
    check_end_points,
    image_calculators,
    interpolate,
    neb,
    validate,
    work_discrepancy,
)

FMAX = 0.05
IMAGES = 5


def vacancy_hop(a: float = 3.59):
    """31-atom fcc Cu (2x2x2 cubic cells at EMT's lattice constant) with a vacancy
    at the origin; in the final state its nearest neighbour has moved into it."""
    initial = bulk("Cu", "fcc", a=a, cubic=True) * 2
    site = initial.positions[0].copy()
    del initial[0]
    distances = np.linalg.norm(find_mic(initial.positions - site, initial.cell)[0], axis=1)
    final = initial.copy()
    final.positions[int(np.argmin(distances))] = site
    return initial, final


def independent_barrier(initial, final) -> float:
    """The same calculation written directly with ASE: relaxed ends, IDPP, CI-NEB, FIRE."""
    ends = []
    for atoms in (initial.copy(), final.copy()):
        atoms.calc = EMT()
        BFGS(atoms, logfile=None).run(fmax=FMAX)
        ends.append(atoms)
    band = [ends[0]] + [ends[0].copy() for _ in range(IMAGES)] + [ends[1]]
    for atoms in band[1:-1]:
        atoms.calc = EMT()
    path = NEB(band, climb=True, method="improvedtangent")
    path.interpolate("idpp", mic=True)
    assert FIRE(path, logfile=None).run(fmax=FMAX, steps=1000)
    energies = [atoms.get_potential_energy() for atoms in band]
    return max(energies) - energies[0]


@pytest.fixture(scope="module")
def ends():
    return vacancy_hop()


@pytest.fixture(scope="module")
def emt_neb(ends):
    return neb(*ends, EMT(), images=IMAGES, fmax=FMAX)


def test_vacancy_hop_barrier_matches_an_independent_ase_neb(ends, emt_neb):
    expected = independent_barrier(*ends)
    assert emt_neb.converged and emt_neb.max_force < FMAX
    assert abs(emt_neb.barrier - expected) < 0.01
    assert 0.5 < emt_neb.barrier < 0.9  # EMT gives 0.79 eV in this 31-atom cell
    # the hop is symmetric: the saddle is the middle image, no reaction energy
    assert emt_neb.climbing == 3
    assert abs(emt_neb.reaction_energy) < 1e-3
    assert abs(emt_neb.backward_barrier - emt_neb.barrier) < 1e-3
    assert emt_neb.energies.shape == emt_neb.path.shape == (IMAGES + 2,)
    assert emt_neb.energies[0] == 0.0 and np.all(np.diff(emt_neb.path) > 0)
    assert 2.5 < emt_neb.path[-1] < 3.5  # the hopping atom moves 2.54 Å, its neighbours a little
    assert all(len(atoms) == 31 for atoms in emt_neb.images)


def test_emt_against_emt_passes_every_criterion(emt_neb):
    for oracle_neb, source in ((emt_neb, "NEB"), (None, "single points")):
        report = validate(emt_neb, EMT(), oracle_neb)
        assert report["pass"], report["criteria"]
        criteria = report["criteria"]
        assert {"converged", "force_continuity", "initial_energy", "final_energy",
                "barrier"} <= set(criteria)
        for key in ("initial_energy", "final_energy", "barrier"):
            assert criteria[key]["value"] < 1e-8
        assert source in report["reference"]["barrier_from"]
        assert report["reference"]["max_force_error_eV_A"] < 1e-8
        assert report["reference"]["label"] == "EMT"


def test_a_different_model_fails_the_barrier_and_energy_criteria(ends, emt_neb):
    # EMT scaled by 1.3: the same geometries, every energy difference 30% larger
    model = LinearCombinationCalculator([EMT()], [1.3])
    result = neb(*ends, model, images=IMAGES, fmax=FMAX)
    report = validate(result, EMT(), emt_neb)
    criteria = report["criteria"]
    assert not report["pass"]
    assert not criteria["barrier"]["pass"]
    assert criteria["barrier"]["value"] == pytest.approx(0.3, abs=0.02)
    for key, i in (("initial_energy", 0), ("final_energy", -1)):
        assert not criteria[key]["pass"]
        assert criteria[key]["value"] == pytest.approx(0.3 * emt_neb.total_energies[i],
                                                       rel=0.02)
    assert criteria["force_continuity"]["pass"] and criteria["converged"]["pass"]
    rows = report["reference"]["comparison"]
    assert rows["barrier_eV"]["model"] == pytest.approx(1.3 * emt_neb.barrier, rel=0.02)


def test_force_continuity_catches_forces_that_disagree_with_energies(emt_neb):
    assert np.abs(work_discrepancy(emt_neb.images)).max() < 0.05
    halved = []
    for atoms in emt_neb.images:
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, energy=atoms.get_potential_energy(),
                                          forces=0.5 * atoms.get_forces())
        halved.append(copy)
    # roughly half of each energy step is now unaccounted for by the work
    assert np.abs(work_discrepancy(halved)).max() > 0.1


def _with(atoms, symbols=None, pbc=None, cell=None):
    atoms = atoms.copy()
    if symbols is not None:
        atoms.set_chemical_symbols(symbols)
    if pbc is not None:
        atoms.pbc = pbc
    if cell is not None:
        atoms.set_cell(cell, scale_atoms=False)
    return atoms


def _swap_order(initial, final):
    """Atom 0 is Ag in the initial state, atom 1 in the final: same composition."""
    symbols = ["Cu"] * len(initial)
    return (_with(initial, symbols=["Ag"] + symbols[1:]),
            _with(final, symbols=symbols[:1] + ["Ag"] + symbols[2:]))


@pytest.mark.parametrize("change, message", [
    (lambda i, f: (i, f[:-1]), "final state 30"),
    (lambda i, f: (i, _with(f, symbols=["Ag"] + ["Cu"] * 30)), "composition"),
    (_swap_order, "different order"),
    (lambda i, f: (i, _with(f, pbc=[True, True, False])), "boundary conditions"),
    (lambda i, f: (i, _with(f, cell=f.cell.array * 1.01)), "cells differ"),
], ids=["number", "composition", "order", "pbc", "cell"])
def test_end_points_with_different_atoms_raise_path_mismatch(ends, change, message):
    initial, final = change(*ends)
    with pytest.raises(PathMismatch, match=message):
        check_end_points(initial, final)
    with pytest.raises(PathMismatch):
        neb(initial, final, EMT())


def test_an_atom_wrapped_across_the_cell_moves_the_short_way(ends):
    initial, final = ends
    wrapped = final.copy()
    hopper = int(np.argmax(np.linalg.norm(final.positions - initial.positions, axis=1)))
    wrapped.positions[hopper] += wrapped.cell[0]
    straight, short = interpolate(initial, final, 3), interpolate(initial, wrapped, 3)
    for a, b in zip(straight[1:-1], short[1:-1]):
        assert np.allclose(a.positions, b.positions, atol=1e-6)


def test_images_get_their_own_calculator_where_it_can_be_copied():
    class Uncopyable(EMT):
        def __deepcopy__(self, memo):
            raise TypeError("cannot pickle a native handle")

    copies = image_calculators(EMT(), 3)
    assert len({id(c) for c in copies}) == 3
    shared = Uncopyable()
    assert image_calculators(shared, 3) == [shared] * 3


def test_neb_command_writes_the_path_plot_and_report(ends, tmp_path, capsys):
    initial, final = tmp_path / "initial.extxyz", tmp_path / "final.extxyz"
    write(initial, ends[0])
    write(final, ends[1])
    out = tmp_path / "neb"
    code = main(["--quiet", "neb", "emt", str(initial), str(final), "--out", str(out),
                 "--reference", "emt"])
    assert code == 0
    report = json.loads((out / "neb.json").read_text())
    assert report["pass"] and report["validation"]["pass"]
    assert "NEB" in report["validation"]["reference"]["barrier_from"]  # emt is cheap: on
    assert report["neb"]["barrier_eV"] == pytest.approx(report["reference_neb"]["barrier_eV"])
    for criterion in report["validation"]["criteria"].values():
        assert {"value", "limit", "pass"} <= set(criterion)
    path = read(out / "path.extxyz", index=":")
    assert len(path) == IMAGES + 2
    assert path[3].get_potential_energy() - path[0].get_potential_energy() == pytest.approx(
        report["neb"]["barrier_eV"])
    assert (out / "neb.png").stat().st_size > 1000


def test_neb_command_rejects_mismatched_end_points(ends, tmp_path, capsys):
    initial, final = tmp_path / "initial.extxyz", tmp_path / "final.extxyz"
    write(initial, ends[0])
    write(final, ends[1][:-1])
    code = main(["--quiet", "neb", "emt", str(initial), str(final), "--out",
                 str(tmp_path / "neb")])
    assert code == 2
    err = capsys.readouterr().err
    assert "mlipkit neb: error:" in err and "add or remove atoms" in err


@pytest.mark.parametrize("options, message", [
    (["--images", "0"], "at least 1 interior image"),
    (["--reference-neb"], "needs a reference calculator"),
])
def test_neb_command_rejects_bad_options(ends, tmp_path, capsys, options, message):
    initial, final = tmp_path / "initial.extxyz", tmp_path / "final.extxyz"
    write(initial, ends[0])
    write(final, ends[1])
    code = main(["--quiet", "neb", "emt", str(initial), str(final), "--out",
                 str(tmp_path / "neb"), *options])
    assert code == 2 and message in capsys.readouterr().err
