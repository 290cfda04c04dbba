"""The Bayesian linear model: design rows against autograd forces, recovery of
a known model and its noise by evidence maximisation, calibrated predictive
spreads, and the model file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule

import mlipkit
from mlipkit.data import Batch, from_atoms
from mlipkit.models.linear import BayesianLinear
from mlipkit.neighbors import attach_neighbors
from mlipkit.uncertainty.estimators import PosteriorStd
from tests.conftest import rattled, triclinic_cu

SPECIES = ["H", "C", "O"]


def _batches(n, seed=0, amplitude=0.15):
    frames = rattled(molecule("CH3CH2OH"), n, amplitude, seed=seed)
    return [attach_neighbors(from_atoms(a).to(dtype=torch.float64), 4.0) for a in frames]


def _model(descriptor="soap", seed=0):
    params = {"n_radial": 3, "l_max": 2} if descriptor == "soap" else None
    model = BayesianLinear(SPECIES, cutoff=4.0, descriptor=descriptor, params=params).double()
    model.fit_scale(_batches(8, seed=50))
    generator = torch.Generator().manual_seed(seed)
    model.weights.copy_(0.05 * torch.randn(model.weights.shape, generator=generator,
                                           dtype=torch.float64))
    return model


@pytest.mark.parametrize("descriptor", ["soap", "acsf"])
def test_design_rows_reproduce_energy_and_autograd_forces(descriptor):
    """Analytic per-edge derivatives assembled into force rows equal the
    autograd forces of the same weights, for two structures in one batch."""
    model = _model(descriptor)
    batch = Batch.collate(_batches(2, seed=3))
    out = model(batch, forces=True)
    x_e, x_f = model.design(batch)
    w = model.weights.flatten()
    assert x_f.shape == (batch.n_total_atoms, 3, w.numel())
    torch.testing.assert_close(x_e @ w, out["energy"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x_f @ w, out["forces"], rtol=1e-9, atol=1e-10)
    assert float(out["forces"].abs().max()) > 1e-3


def test_design_rows_in_a_small_periodic_cell():
    """Edges to periodic images of the atom itself (a cell shorter than the
    cutoff) and triclinic shifts: force rows still equal autograd forces."""
    atoms = [triclinic_cu(seed=s) for s in range(2)]
    model = BayesianLinear(["Cu"], cutoff=4.0, params={"n_radial": 3, "l_max": 3}).double()
    batches = [attach_neighbors(from_atoms(a), 4.0) for a in atoms]
    model.fit_scale(batches)
    model.weights.normal_(generator=torch.Generator().manual_seed(0))
    batch = Batch.collate(batches)
    x_e, x_f = model.design(batch)
    out = model(batch, forces=True)
    w = model.weights.flatten()
    torch.testing.assert_close(x_f @ w, out["forces"], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x_e @ w, out["energy"], rtol=1e-10, atol=1e-9)


def _teacher_data(teacher, batches, sigma_e, sigma_f, seed):
    rng = torch.Generator().manual_seed(seed)
    energies, forces = [], []
    for b in batches:
        out = teacher(b, forces=True)
        energies.append(out["energy"] + sigma_e * torch.randn(1, generator=rng,
                                                              dtype=torch.float64))
        forces.append(out["forces"] + sigma_f * torch.randn(out["forces"].shape, generator=rng,
                                                            dtype=torch.float64))
    return energies, forces


def test_evidence_maximisation_recovers_the_noise_and_calibrates():
    """Targets from a known linear model plus Gaussian noise: the fit finds the
    noise levels, predicts held-out forces better than the noise, and its 90%
    intervals cover about 90% of the held-out force errors."""
    teacher = _model(seed=1)
    student = BayesianLinear(SPECIES, cutoff=4.0, params={"n_radial": 3, "l_max": 2}).double()
    student.scale.copy_(teacher.scale)
    train, test = _batches(60, seed=100), _batches(20, seed=500)
    sigma_e, sigma_f = 0.02, 0.05
    energies, forces = _teacher_data(teacher, train, sigma_e, sigma_f, seed=7)
    info = student.fit(train, energies, forces)
    assert info["forces_noise"] == pytest.approx(sigma_f, rel=0.1)
    assert info["energy_noise"] == pytest.approx(sigma_e, rel=0.5)
    assert 0 < info["effective_parameters"] < info["parameters"]

    energies, forces = _teacher_data(teacher, test, sigma_e, sigma_f, seed=8)
    batch = Batch.collate(test)
    out = student(batch, forces=True)
    std = student.predictive_std(batch)
    errors = out["forces"] - torch.cat(forces)
    assert float(errors.abs().mean()) < 1.2 * sigma_f * np.sqrt(2 / np.pi)
    inside = (errors.abs() <= 1.6449 * std["forces_std"]).double().mean()
    assert 0.85 < float(inside) < 0.95
    assert std["energy_std"].shape == (20,) and bool((std["energy_std"] >= sigma_e * 0.5).all())


def test_unseen_environments_are_more_uncertain():
    """Fitted on gently rattled ethanol, the model is less sure of strongly
    distorted ethanol than of more gentle frames."""
    teacher = _model(seed=2)
    student = BayesianLinear(SPECIES, cutoff=4.0, params={"n_radial": 3, "l_max": 2}).double()
    student.scale.copy_(teacher.scale)
    train = _batches(40, seed=100, amplitude=0.05)
    student.fit(train, *_teacher_data(teacher, train, 0.01, 0.02, seed=1))
    near = student.predictive_std(Batch.collate(_batches(5, seed=900, amplitude=0.05)))
    far = student.predictive_std(Batch.collate(_batches(5, seed=900, amplitude=0.4)))
    assert float(far["forces_std"].mean()) > 2 * float(near["forces_std"].mean())
    scores = PosteriorStd(student, batch_size=2).score(_batches(5, seed=900, amplitude=0.4))
    np.testing.assert_allclose(scores.per_atom, far["forces_std"].norm(dim=-1).numpy())


def test_model_file_keeps_the_posterior(tmp_path):
    model = _model()
    train = _batches(10, seed=100)
    model.fit(train, *_teacher_data(_model(seed=3), train, 0.01, 0.02, seed=1))
    path = mlipkit.save(model, tmp_path / "linear.safetensors")
    loaded = mlipkit.load(path)
    batch = _batches(1, seed=9)[0].to(dtype=torch.float64)
    for key, value in model.predictive_std(batch).items():
        torch.testing.assert_close(loaded.predictive_std(batch)[key], value)
    torch.testing.assert_close(loaded(batch)["forces"], model(batch)["forces"])
    # a float32 copy keeps the posterior in float64: the same spreads to float32 precision
    single = model.float()
    assert single.covariance.dtype == torch.float64 and single.scale.dtype == torch.float32
    spread = single.predictive_std(batch.to(dtype=torch.float32))
    torch.testing.assert_close(spread["forces_std"].double(),
                               loaded.predictive_std(batch)["forces_std"], rtol=1e-5, atol=0)


def test_unfitted_and_bad_input_errors():
    model = BayesianLinear(SPECIES, cutoff=4.0)
    with pytest.raises(RuntimeError, match="not been fitted"):
        model.predictive_std(_batches(1)[0].to(dtype=torch.float32))
    with pytest.raises(ValueError, match="descriptor"):
        BayesianLinear(SPECIES, descriptor="mbtr")
    with pytest.raises(mlipkit.errors.MissingLabel):
        model.fit([], [], [])
