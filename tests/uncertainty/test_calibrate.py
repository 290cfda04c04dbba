"""`mlipkit calibrate`: a Bayesian linear model fitted on data with one noise
level, calibrated on data with three times that noise, finds the factor."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

import mlipkit
from mlipkit.cli import main
from mlipkit.models.linear import BayesianLinear
from tests.conftest import rattled, triclinic_cu

SPECIES = ["H", "C", "O"]
PARAMS = {"n_radial": 3, "l_max": 2}


def _teacher():
    model = BayesianLinear(SPECIES, cutoff=4.0, params=PARAMS).double()
    model.fit_scale([mlipkit.data.from_atoms(a) for a in _frames(8, 50)])
    model.weights.copy_(0.05 * torch.randn(model.weights.shape,
                                           generator=torch.Generator().manual_seed(1),
                                           dtype=torch.float64))
    return model


def _frames(n, seed):
    return rattled(molecule("CH3CH2OH"), n, 0.15, seed=seed)


def _labelled(teacher, frames, sigma_e, sigma_f, seed):
    rng = np.random.default_rng(seed)
    out = []
    for a in frames:
        result = teacher(mlipkit.data.from_atoms(a).to(dtype=torch.float64))
        a = a.copy()
        a.calc = SinglePointCalculator(
            a, energy=float(result["energy"][0]) + sigma_e * rng.normal(),
            forces=result["forces"].numpy() + sigma_f * rng.normal(size=(len(a), 3)))
        out.append(a)
    return out


@pytest.fixture
def fitted(tmp_path):
    teacher = _teacher()
    student = BayesianLinear(SPECIES, cutoff=4.0, params=PARAMS).double()
    student.scale.copy_(teacher.scale)
    train = _labelled(teacher, _frames(50, 100), 0.01, 0.02, seed=1)
    batches = [mlipkit.data.from_atoms(a, labels={"energy": a.get_potential_energy(),
                                                  "forces": a.get_forces()}) for a in train]
    student.fit(batches, [b.energy for b in batches], [b.forces for b in batches])
    path = mlipkit.save(student, tmp_path / "linear.safetensors")
    valid = tmp_path / "valid.xyz"
    ase.io.write(valid, _labelled(teacher, _frames(60, 700), 0.03, 0.06, seed=2))
    return path, valid


def test_calibration_finds_the_noise_inflation(fitted, tmp_path, capsys):
    path, valid = fitted
    out = tmp_path / "calibrated.safetensors"
    code = main(["calibrate", str(path), str(valid), "--output", str(out), "--json",
                 "--plots", str(tmp_path / "plots")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert 2.5 < report["std_scale"]["forces"] < 3.3
    assert report["before"]["coverage_90"] < 0.5
    assert 0.87 <= report["after"]["coverage_90"] <= 0.93
    assert report["after"]["nll"] < report["before"]["nll"]
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 10_000
    model = mlipkit.load(out)
    assert model.std_scale == pytest.approx([report["std_scale"]["energy"],
                                             report["std_scale"]["forces"]])
    assert mlipkit.models.checkpoint.read_metadata(out)["extra"]["calibration"]["n_structures"] \
        == 60
    # eval reports the same calibrated figures
    assert main(["eval", str(out), str(valid), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["uncertainty"]
    assert figures["coverage_90"] == pytest.approx(report["after"]["coverage_90"], abs=0.01)


def test_isotonic_table_is_stored_and_used_by_eval(fitted, tmp_path, capsys):
    path, valid = fitted
    out = tmp_path / "isotonic.safetensors"
    assert main(["calibrate", str(path), str(valid), "--output", str(out), "--json",
                 "--isotonic"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["isotonic"]
    for level in (50, 90, 95):  # fitted on these errors: nominal up to the quantile step
        assert report["after"][f"coverage_{level}"] == pytest.approx(level / 100, abs=0.005)
    table = mlipkit.load(out).interval_table
    assert len(table) == 99 and table == sorted(table)
    assert main(["eval", str(out), str(valid), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["uncertainty"]
    assert figures["coverage_90"] == pytest.approx(report["after"]["coverage_90"], abs=0.01)
    # calibrating again without --isotonic clears the table
    assert main(["calibrate", str(out), str(valid), "--json"]) == 0
    capsys.readouterr()
    assert mlipkit.load(out).interval_table is None


def test_calibration_refuses_bad_input(fitted, tmp_path, capsys):
    path, valid = fitted
    one = tmp_path / "one.xyz"
    ase.io.write(one, ase.io.read(valid, index=0))
    assert main(["calibrate", str(path), str(one)]) == 2
    assert "at least 2" in capsys.readouterr().err
    unlabelled = tmp_path / "unlabelled.xyz"
    ase.io.write(unlabelled, _frames(3, 5))
    assert main(["calibrate", str(path), str(unlabelled)]) == 2
    assert "energy" in capsys.readouterr().err
    cu = triclinic_cu()
    plain = tmp_path / "plain.safetensors"
    from tests.conftest import CU_REF, build_potential

    mlipkit.save(build_potential(["Cu"], [cu], CU_REF, torch.float64), plain)
    assert main(["calibrate", str(plain), str(valid)]) == 2
    assert "no uncertainty" in capsys.readouterr().err


def test_ensembles_calibrate_and_old_files_load():
    """An ensemble's spreads get the factor too; a config written before
    std_scale existed loads with factors of 1."""
    from ase.calculators.emt import EMT

    from mlipkit.models import build
    from mlipkit.models.ensemble import EnsemblePotential
    from mlipkit.uncertainty.calibrate import calibrate
    from tests.conftest import CU_REF, build_potential

    cells = [triclinic_cu(seed=s) for s in range(6)]
    members = [build_potential(["Cu"], cells, CU_REF, torch.float64, seed=s) for s in range(3)]
    ensemble = EnsemblePotential(members)
    labelled = []
    for a in cells:
        a.calc = EMT()
        labelled.append(mlipkit.data.from_atoms(a, labels={
            "energy": a.get_potential_energy() - 1300.0 * len(a), "forces": a.get_forces()}))
    report = calibrate(ensemble, labelled)
    assert ensemble.std_scale == [report["std_scale"]["energy"], report["std_scale"]["forces"]]
    assert report["after"]["nll"] < report["before"]["nll"]
    config = ensemble.config()
    del config["std_scale"], config["interval_table"]
    old = build(config)
    assert old.std_scale == [1.0, 1.0] and old.interval_table is None
    with pytest.raises(ValueError, match="non-decreasing"):
        EnsemblePotential(members, interval_table=list(range(99, 0, -1)))
