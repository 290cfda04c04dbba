"""A linear potential on descriptors with a Bayesian (ridge) posterior.

E_i = w_{Z_i} · (G_i / s_{Z_i}), with G_i the atom's descriptor vector (SOAP
power spectrum or ACSF) and s a per-element feature scale fitted from data.
An isolated atom has G = 0 and so zero energy: reference energies and a ZBL
prior compose around this term as for the neural networks.

The weights are fitted in closed form on energies *and* forces (forces
through the descriptor Jacobian) with a Gaussian prior w ~ N(0, α⁻¹I) and
Gaussian noise of precision β_E on energies and β_F on force components.
α, β_E and β_F maximise the evidence (MacKay's fixed-point updates), so
nothing is tuned by hand. The posterior covariance Σ gives predictive
standard deviations: σ²(y) = xᵀΣx + 1/β for an energy or a force component
with design row x.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from ase.data import chemical_symbols

from mlipkit.data.batch import Batch
from mlipkit.descriptors.acsf import ACSF, default_parameters
from mlipkit.descriptors.soap import PowerSpectrum
from mlipkit.errors import MissingLabel
from mlipkit.models.base import (
    Capabilities,
    Potential,
    check_interval_table,
    check_std_scale,
    local_edges,
    species_lookup,
    to_numbers,
)

log = logging.getLogger(__name__)

DESCRIPTORS = ("soap", "acsf")


class BayesianLinear(Potential):
    """Linear model on per-atom descriptors with a Bayesian-ridge posterior.

    Args:
        species: element symbols or atomic numbers.
        cutoff: descriptor cutoff in Å.
        descriptor: ``"soap"`` (power spectrum) or ``"acsf"``.
        params: descriptor parameters (``n_radial``, ``l_max`` for SOAP; the
            :func:`~mlipkit.descriptors.acsf.default_parameters` output for
            ACSF, generated from the cutoff when omitted).
        std_scale: (energy, forces) factors on the predicted standard
            deviations, set by ``mlipkit calibrate``.
        interval_table: isotonic force-interval table, set by
            ``mlipkit calibrate --isotonic``.
    """

    type_name = "linear"

    def __init__(self, species: Sequence[str | int], cutoff: float = 5.0,
                 descriptor: str = "soap", params: dict | None = None,
                 std_scale: Sequence[float] = (1.0, 1.0),
                 interval_table: Sequence[float] | None = None) -> None:
        super().__init__()
        if descriptor not in DESCRIPTORS:
            raise ValueError(f"descriptor must be one of {DESCRIPTORS}, got {descriptor!r}")
        self.species = to_numbers(species)
        self.cutoff = float(cutoff)
        self.descriptor = descriptor
        self.std_scale = check_std_scale(std_scale)
        self.interval_table = check_interval_table(interval_table)
        n = len(self.species)
        if descriptor == "soap":
            self.params = {"n_radial": 6, "l_max": 4, **(params or {})}
            self.features = PowerSpectrum(n, self.cutoff, **self.params)
        else:
            self.params = dict(params or default_parameters(self.cutoff))
            self.features = ACSF(n, self.cutoff, **self.params)
        f = self.features.n_features
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)
        dtype = torch.get_default_dtype()
        self.register_buffer("scale", torch.ones(n, f, dtype=dtype))
        self.register_buffer("weights", torch.zeros(n, f, dtype=dtype))
        # the posterior stays float64 whatever the model's dtype (see _apply)
        self.register_buffer("covariance", torch.zeros(n * f, n * f, dtype=torch.float64))
        # α, β_E, β_F; zeros until fitted
        self.register_buffer("precisions", torch.zeros(3, dtype=torch.float64))

    def config(self) -> dict:
        return {"type": self.type_name, "species": [chemical_symbols[z] for z in self.species],
                "cutoff": self.cutoff, "descriptor": self.descriptor, "params": self.params,
                "std_scale": self.std_scale, "interval_table": self.interval_table}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(species=tuple(self.species), cutoff=self.cutoff, dtype=self.dtype)

    @property
    def fitted(self) -> bool:
        return bool(self.precisions[0] > 0)

    def scaled_descriptors(self, batch: Batch) -> torch.Tensor:
        """G_i / s_{Z_i} [N, F] for a batch with a neighbor list."""
        edge_index, vec, _ = local_edges(batch, self.cutoff)
        species = self.lookup[batch.numbers]
        i, j = edge_index
        raw = self.features(i, species[j], vec, batch.n_total_atoms)
        return raw / self.scale[species]

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        x = self.scaled_descriptors(batch)
        return (x * self.weights[self.lookup[batch.numbers]]).sum(-1)

    # -- design matrix ---------------------------------------------------------
    def _energy_rows(self, x: torch.Tensor, batch: Batch) -> torch.Tensor:
        """x_E [B, S·F]: per structure, the scaled descriptors summed per element."""
        species = self.lookup[batch.numbers]
        n_s = len(self.species)
        rows = x.new_zeros(batch.n_structures * n_s, x.shape[1])
        rows = rows.index_add(0, batch.system * n_s + species, x)
        return rows.view(batch.n_structures, -1)

    @torch.no_grad()
    def design(self, batch: Batch, forces: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Design rows: energies x_E [B, S·F] and forces X_F [N, 3, S·F] (or
        None), such that E = x_E w and F = X_F w. Force rows come from the
        descriptors' derivatives with respect to each edge vector, so their
        cost grows with the number of edges, as the energy's does."""
        edge_index, vec, _ = local_edges(batch, self.cutoff)
        species = self.lookup[batch.numbers]
        i, j = edge_index
        n, n_s = batch.n_total_atoms, len(self.species)
        if not forces:
            return self._energy_rows(self.scaled_descriptors(batch), batch), None
        raw, jacobian = self.features.with_jacobian(i, species[j], vec, n)
        scale = self.scale[species]
        x_energy = self._energy_rows(raw / scale, batch)
        # ∂x_E/∂R_k = Σ_e J_e / s (δ_k,j(e) − δ_k,i(e)), in the centre's element block
        per_edge = jacobian.transpose(1, 2) / scale.index_select(0, i).unsqueeze(1)  # [E, 3, F]
        block = species.index_select(0, i)
        grad = per_edge.new_zeros(n * n_s, 3, per_edge.shape[-1])
        grad = grad.index_add(0, j * n_s + block, per_edge).index_add(0, i * n_s + block,
                                                                      -per_edge)
        x_forces = -grad.view(n, n_s, 3, -1).transpose(1, 2).reshape(n, 3, -1)
        return x_energy, x_forces

    # -- fitting -----------------------------------------------------------------
    @torch.no_grad()
    def fit_scale(self, batches: Sequence[Batch]) -> None:
        """Per-element feature scales: the root mean square over training atoms
        (1 where a feature is always zero)."""
        self.scale.fill_(1.0)
        n_s = len(self.species)
        total = torch.zeros(n_s, self.features.n_features, dtype=torch.float64)
        count = torch.zeros(n_s, dtype=torch.float64)
        for b in batches:
            b = self.prepare(b)
            x = self.scaled_descriptors(b).double().cpu()
            species = self.lookup[b.numbers].cpu()
            total.index_add_(0, species, x.square())
            count.index_add_(0, species, torch.ones_like(species, dtype=torch.float64))
        rms = (total / count.clamp(min=1).unsqueeze(-1)).sqrt()
        self.scale.copy_(torch.where(rms > 1e-12, rms, torch.ones_like(rms)))

    @torch.no_grad()
    def fit(self, batches: Sequence[Batch], energy_targets: Sequence[torch.Tensor],
            force_targets: Sequence[torch.Tensor | None], max_iterations: int = 200,
            tolerance: float = 1e-5, chunk: int = 16, progress: bool = False) -> dict:
        """Closed-form Bayesian fit to per-structure targets (what this term
        should add to the rest of the model; ``None`` for a structure without
        force labels); returns the fitted prior precision α, the energy and
        force noise (standard deviations), the iteration count and the
        effective number of parameters γ. The evidence maximisation stops
        when α and the noise precisions change by less than ``tolerance``
        (relative) in an iteration."""
        from tqdm.auto import tqdm

        from mlipkit.data.keys import LABEL_KEYS

        if not batches:
            raise MissingLabel("fitting a linear model needs at least one structure")
        p = self.weights.numel()
        gram = {k: torch.zeros(p, p, dtype=torch.float64) for k in "EF"}
        rhs = {k: torch.zeros(p, dtype=torch.float64) for k in "EF"}
        yy = dict.fromkeys("EF", 0.0)
        n = dict.fromkeys("EF", 0)
        items = list(zip(batches, energy_targets, force_targets))
        for k in tqdm(range(0, len(items), chunk), desc="design matrix", disable=not progress,
                      leave=False):
            part = items[k : k + chunk]
            group = self.prepare(Batch.collate([b.without(*LABEL_KEYS) for b, _, _ in part]))
            labelled = [f is not None for _, _, f in part]
            x_e, x_f = self.design(group, forces=any(labelled))
            rows = [("E", x_e, torch.cat([e.reshape(1) for _, e, _ in part]))]
            if any(labelled):  # force rows of the structures that have force labels
                atom_has = torch.repeat_interleave(torch.tensor(labelled), group.n_atoms.cpu())
                rows.append(("F", x_f[atom_has.to(x_f.device)].flatten(0, 1),
                             torch.cat([f.reshape(-1) for _, _, f in part if f is not None])))
            for key, x, y in rows:
                x, y = x.double().cpu(), y.double().cpu()
                gram[key] += x.T @ x
                rhs[key] += x.T @ y
                yy[key] += float(y @ y)
                n[key] += y.numel()
        alpha, beta, iterations, gamma, sigma, mean = _evidence(
            {k: (gram[k], rhs[k], yy[k], n[k]) for k in "EF" if n[k]}, max_iterations, tolerance)
        beta_e, beta_f = beta["E"], beta.get("F", 0.0)
        self.weights.copy_(mean.view_as(self.weights))
        self.covariance.copy_(sigma)
        self.precisions.copy_(torch.tensor([alpha, beta_e, beta_f], dtype=torch.float64))
        info = {"alpha": alpha, "energy_noise": beta_e**-0.5,
                "forces_noise": beta_f**-0.5 if beta_f else None,
                "iterations": iterations, "effective_parameters": gamma, "parameters": p}
        log.info("Bayesian linear fit: %s", info)
        return info

    # -- uncertainty -----------------------------------------------------------
    @torch.no_grad()
    def predictive_std(self, batch: Batch, forces: bool = True) -> dict[str, torch.Tensor]:
        """``energy_std`` [B] and ``forces_std`` [N, 3]: posterior predictive
        standard deviations (weight uncertainty plus the fitted noise), times
        ``std_scale``; computed in float64."""
        if not self.fitted:
            raise RuntimeError("the linear model has not been fitted; no posterior yet")
        batch = self.prepare(batch)
        sigma = self.covariance.double()
        _, beta_e, beta_f = (float(v) for v in self.precisions)
        x_e, x_f = self.design(batch, forces=forces)
        x_e = x_e.double()
        scale_e, scale_f = self.std_scale
        dtype = self.dtype
        variance = ((x_e @ sigma) * x_e).sum(-1) + 1.0 / beta_e
        out = {"energy_std": (scale_e * variance.sqrt()).to(dtype)}
        if forces:
            x_f = x_f.double()
            noise = 1.0 / beta_f if beta_f > 0 else 0.0  # 0: fitted on energies alone
            variance = ((x_f @ sigma) * x_f).sum(-1) + noise
            out["forces_std"] = (scale_f * variance.sqrt()).to(dtype)
        return out

    def _apply(self, fn, recurse=True):
        """Casts keep the posterior in float64 (devices still change): a
        float32 covariance would lose the small variances."""
        keep = {k: self._buffers[k] for k in ("covariance", "precisions")}
        super()._apply(fn, recurse)
        for name, old in keep.items():
            self._buffers[name] = old.to(device=self._buffers[name].device)
        return self


def _evidence(terms: dict, max_iterations: int, tolerance: float):
    """MacKay's evidence maximisation with one noise precision per kind of
    target; ``terms`` maps a kind to (XᵀX, Xᵀy, yᵀy, row count)."""
    p = next(iter(terms.values()))[0].shape[0]
    eye = torch.eye(p, dtype=torch.float64)
    beta = {k: n / max(yy, 1e-300) for k, (_, _, yy, n) in terms.items()}  # 1 / mean square
    alpha = 1.0

    def posterior():
        precision = alpha * eye + sum(beta[k] * g for k, (g, _, _, _) in terms.items())
        sigma = torch.cholesky_inverse(torch.linalg.cholesky(precision))
        return sigma, sigma @ sum(beta[k] * r for k, (_, r, _, _) in terms.items())

    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        sigma, mean = posterior()
        gamma = {k: beta[k] * float((sigma * g).sum()) for k, (g, _, _, _) in terms.items()}
        if sum(gamma.values()) <= 0 or float(mean @ mean) <= 0:
            break  # nothing to learn (all descriptors zero): keep the prior
        new_alpha = sum(gamma.values()) / float(mean @ mean)
        new_beta = {}
        for k, (g, r, yy, n) in terms.items():
            error = max(yy - 2 * float(mean @ r) + float(mean @ g @ mean), 1e-300)
            new_beta[k] = max(n - gamma[k], 1e-12) / error
        change = max(abs(math.log(new_alpha / alpha)),
                     *(abs(math.log(new_beta[k] / beta[k])) for k in terms))
        alpha, beta = new_alpha, new_beta
        if change < tolerance:
            break
    else:
        log.warning("evidence maximisation stopped after %d iterations without converging",
                    max_iterations)
    sigma, mean = posterior()
    gamma = p - alpha * float(torch.diagonal(sigma).sum())
    return alpha, beta, iterations, gamma, sigma, mean
