"""Integrators: ``init(state) -> state`` and ``step(state, forcefield, dt) -> state``.

Every integrator acts on all replicas of a state at once; thermostat and
barostat variables are per replica. Time steps are in fs, temperatures in K,
friction in 1/fs, relaxation times in fs, pressures in eV/Å³.

- :class:`VelocityVerlet` — NVE.
- :class:`Langevin` — BAOAB splitting (Leimkuhler & Matthews 2013).
- :class:`Bussi` — stochastic velocity rescaling (Bussi, Donadio & Parrinello 2007).
- :class:`NoseHooverChain` — Martyna–Klein–Tuckerman chains with a Trotter splitting.
- :class:`StochasticCellRescaling` — isotropic NPT (Bernetti & Bussi 2020) with a
  Bussi thermostat on the particles.

Each integrator except the NPT one also gives ``conserved(state)``: the total
energy plus what the thermostat has taken out (the "effective energy"), whose
drift measures the integration error.
"""

from __future__ import annotations

import abc
import math

import numpy as np
import torch

from mlipkit.errors import InvalidConfig
from mlipkit.md.forcefield import ForceField
from mlipkit.md.state import MDState, com_free
from mlipkit.units import amu_A2_per_fs2, kB


def _kick(state: MDState, dt: float) -> MDState:
    """p += F dt (fixed atoms have zero force and stay at zero momentum)."""
    return state.replace(momenta=state.momenta + state.forces * (dt / amu_A2_per_fs2))


def _drift(state: MDState, dt: float) -> MDState:
    positions = state.positions + state.momenta / state.masses.unsqueeze(-1) * dt
    return state.replace(batch=state.batch.replace(positions=positions))


def _verlet(state: MDState, ff: ForceField, dt: float) -> MDState:
    state = _drift(_kick(state, 0.5 * dt), dt)
    return _kick(ff.evaluate(state), 0.5 * dt)


def _advance(state: MDState, dt: float) -> MDState:
    return state.replace(step=state.step + 1, time=state.time + dt)


def _scale_momenta(state: MDState, factor: torch.Tensor) -> MDState:
    """Multiply each replica's momenta by factor [B]."""
    return state.replace(momenta=state.momenta * factor[state.system].unsqueeze(-1))


class Integrator(abc.ABC):
    """Base: ``step`` returns a new state; the input state is not modified."""

    def init(self, state: MDState) -> MDState:
        return state

    @abc.abstractmethod
    def step(self, state: MDState, ff: ForceField, dt: float) -> MDState: ...

    def conserved(self, state: MDState) -> torch.Tensor | None:
        """[B] eV: total energy plus the energy the thermostat has removed
        (None where the integrator has no conserved quantity)."""
        heat = state.thermostat.get("heat", torch.zeros_like(state.energy))
        return state.energy + state.kinetic_energy() + heat

    @property
    def needs_stress(self) -> bool:
        return False


class VelocityVerlet(Integrator):
    def step(self, state: MDState, ff: ForceField, dt: float) -> MDState:
        return _advance(_verlet(state, ff, dt), dt)


class _Thermostat(Integrator):
    def __init__(self, temperature: float, seed: int = 0) -> None:
        if temperature <= 0:
            raise InvalidConfig(f"temperature must be > 0 K, got {temperature}")
        self.temperature = float(temperature)
        self.kT = kB * self.temperature
        self.rng = np.random.default_rng([seed, 1])  # a stream apart from initial_state's

    def init(self, state: MDState) -> MDState:
        heat = state.thermostat.get("heat", torch.zeros_like(state.energy))
        return state.replace(thermostat={**state.thermostat, "heat": heat})

    def _normal(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.rng.standard_normal(shape)).to(like)

    def _add_heat(self, state: MDState, before: torch.Tensor) -> MDState:
        heat = state.thermostat["heat"] + before - state.kinetic_energy()
        return state.replace(thermostat={**state.thermostat, "heat": heat})


class Langevin(_Thermostat):
    """BAOAB: half kick, half drift, Ornstein–Uhlenbeck on momenta, half drift,
    forces, half kick. Configurational sampling is exact to second order."""

    def __init__(self, temperature: float, friction: float = 0.01, seed: int = 0) -> None:
        super().__init__(temperature, seed)
        if friction <= 0:
            raise InvalidConfig(f"friction must be > 0 (1/fs), got {friction}")
        self.friction = float(friction)

    def step(self, state: MDState, ff: ForceField, dt: float) -> MDState:
        state = _drift(_kick(state, 0.5 * dt), 0.5 * dt)
        before = state.kinetic_energy()
        c1 = math.exp(-self.friction * dt)
        sigma = torch.sqrt(state.masses * self.kT / amu_A2_per_fs2).unsqueeze(-1)
        noise = self._normal(state.momenta.shape, state.momenta)
        p = c1 * state.momenta + math.sqrt(1.0 - c1 * c1) * sigma * noise
        p = p.masked_fill(state.fixed.unsqueeze(-1), 0.0)
        if state.remove_com:
            p = com_free(p, state.masses, state.system, state.n_replicas)
        state = self._add_heat(state.replace(momenta=p), before)
        state = _drift(state, 0.5 * dt)
        return _advance(_kick(ff.evaluate(state), 0.5 * dt), dt)


class Bussi(_Thermostat):
    """Velocity Verlet between two half-step stochastic rescalings of each
    replica's kinetic energy towards the canonical distribution."""

    def __init__(self, temperature: float, tau: float = 100.0, seed: int = 0) -> None:
        super().__init__(temperature, seed)
        if tau <= 0:
            raise InvalidConfig(f"tau must be > 0 fs, got {tau}")
        self.tau = float(tau)

    def _rescale(self, state: MDState, dt: float) -> MDState:
        kinetic = state.kinetic_energy()
        dof = state.degrees_of_freedom()
        c = math.exp(-dt / self.tau)
        target = 0.5 * dof * self.kT  # mean kinetic energy
        k = kinetic.detach().cpu().double().numpy()
        n = dof.cpu().double().numpy()
        r1 = self.rng.standard_normal(len(k))
        # sum of n-1 squared normals: a chi-squared variate
        rest = 2.0 * self.rng.standard_gamma(np.maximum(n - 1.0, 1e-12) / 2.0)
        ratio = target.cpu().double().numpy() / (n * np.maximum(k, 1e-300))
        alpha2 = c + (1 - c) * (rest + r1**2) * ratio + 2 * r1 * np.sqrt(c * (1 - c) * ratio)
        sign = np.sign(r1 + np.sqrt(c / ((1 - c) * ratio)))
        alpha = torch.from_numpy(sign * np.sqrt(np.maximum(alpha2, 0.0))).to(kinetic)
        alpha = torch.where(kinetic > 0, alpha, torch.ones_like(alpha))
        heat = state.thermostat["heat"] + kinetic * (1.0 - alpha * alpha)
        state = _scale_momenta(state, alpha)
        return state.replace(thermostat={**state.thermostat, "heat": heat})

    def step(self, state: MDState, ff: ForceField, dt: float) -> MDState:
        state = self._rescale(state, 0.5 * dt)
        state = _verlet(state, ff, dt)
        return _advance(self._rescale(state, 0.5 * dt), dt)


class NoseHooverChain(Integrator):
    """Nosé–Hoover chain of ``length`` thermostats per replica, relaxation
    time ``tau``; chain masses Q₁ = N_f kT τ², Q_j = kT τ²."""

    def __init__(self, temperature: float, tau: float = 100.0, length: int = 3) -> None:
        if temperature <= 0 or tau <= 0 or length < 1:
            raise InvalidConfig("NoseHooverChain needs temperature > 0, tau > 0 and length >= 1")
        self.temperature, self.tau, self.length = float(temperature), float(tau), int(length)
        self.kT = kB * self.temperature

    def _masses(self, state: MDState) -> torch.Tensor:
        q = torch.full((state.n_replicas, self.length), self.kT * self.tau**2,
                       dtype=state.momenta.dtype, device=state.momenta.device)
        q[:, 0] = q[:, 0] * state.degrees_of_freedom()
        return q

    def init(self, state: MDState) -> MDState:
        if bool((state.degrees_of_freedom() < 1).any()):
            raise InvalidConfig("a replica has no degrees of freedom to thermostat")
        if "xi" in state.thermostat:
            return state
        zeros = state.momenta.new_zeros(state.n_replicas, self.length)
        return state.replace(thermostat={**state.thermostat, "xi": zeros, "v_xi": zeros.clone()})

    def _half(self, state: MDState, dt: float) -> MDState:
        """Propagate the chain and scale momenta over dt/2."""
        q = self._masses(state)
        n_f = state.degrees_of_freedom()
        v = state.thermostat["v_xi"].clone()
        xi = state.thermostat["xi"].clone()
        k2 = 2.0 * state.kinetic_energy()
        m = self.length
        dt2, dt4, dt8 = 0.5 * dt, 0.25 * dt, 0.125 * dt

        def force(j, k2):
            if j == 0:
                return (k2 - n_f * self.kT) / q[:, 0]
            return (q[:, j - 1] * v[:, j - 1] ** 2 - self.kT) / q[:, j]

        v[:, m - 1] += force(m - 1, k2) * dt4
        for j in range(m - 2, -1, -1):
            damp = torch.exp(-v[:, j + 1] * dt8)
            v[:, j] = (v[:, j] * damp + force(j, k2) * dt4) * damp
        xi = xi + v * dt2
        scale = torch.exp(-v[:, 0] * dt2)
        k2 = k2 * scale**2
        for j in range(m - 1):
            damp = torch.exp(-v[:, j + 1] * dt8)
            v[:, j] = (v[:, j] * damp + force(j, k2) * dt4) * damp
        v[:, m - 1] += force(m - 1, k2) * dt4
        state = _scale_momenta(state, scale)
        return state.replace(thermostat={**state.thermostat, "xi": xi, "v_xi": v})

    def step(self, state: MDState, ff: ForceField, dt: float) -> MDState:
        state = self._half(state, dt)
        state = _verlet(state, ff, dt)
        return _advance(self._half(state, dt), dt)

    def conserved(self, state: MDState) -> torch.Tensor:
        q = self._masses(state)
        v, xi = state.thermostat["v_xi"], state.thermostat["xi"]
        chain = 0.5 * (q * v**2).sum(-1) + state.degrees_of_freedom() * self.kT * xi[:, 0]
        chain = chain + self.kT * xi[:, 1:].sum(-1)
        return state.energy + state.kinetic_energy() + chain


class StochasticCellRescaling(Bussi):
    """Isotropic NPT: a Bussi thermostat on the particles and stochastic cell
    rescaling of the volume (Bernetti & Bussi 2020) towards ``pressure``.

    ``compressibility`` (1/(eV/Å³)) and ``tau_p`` (fs) set how fast the volume
    relaxes; the sampled ensemble does not depend on them. The volume
    distribution is V^n exp(−βPV) with n set by the kinetic pressure: n = N − 1
    when the centre-of-mass momentum is removed (an ideal gas then obeys
    ⟨V⟩ = NkT/P exactly), n = N otherwise; the two differ by O(1/N).
    """

    def __init__(self, temperature: float, pressure: float = 0.0, tau: float = 100.0,
                 tau_p: float = 1000.0, compressibility: float = 1.0, seed: int = 0) -> None:
        super().__init__(temperature, tau, seed)
        if tau_p <= 0 or compressibility <= 0:
            raise InvalidConfig("tau_p and compressibility must be > 0")
        self.pressure, self.tau_p, self.compressibility = float(pressure), float(tau_p), \
            float(compressibility)

    @property
    def needs_stress(self) -> bool:
        return True

    def init(self, state: MDState) -> MDState:
        if not bool(state.batch.pbc.all()):
            raise InvalidConfig("NPT needs cells periodic in all three directions")
        if bool(state.fixed.any()):
            raise InvalidConfig("NPT with fixed atoms is not supported; use NVT")
        return super().init(state)

    def _barostat(self, state: MDState, dt: float) -> MDState:
        volume = state.volume()
        internal = state.pressure()
        beta = self.compressibility
        # Itô form in ε = ln V: the kT/V term of the volume equation cancels
        drift = -(beta / self.tau_p) * (self.pressure - internal) * dt
        width = torch.sqrt(2.0 * self.kT * beta * dt / (self.tau_p * volume))
        eps = drift + width * self._normal(volume.shape, volume)
        mu = torch.exp(eps / 3.0)
        per_atom = mu[state.system].unsqueeze(-1)
        batch = state.batch.replace(positions=state.positions * per_atom,
                                    cell=state.batch.cell * mu.view(-1, 1, 1))
        return state.replace(batch=batch, momenta=state.momenta / per_atom)

    def step(self, state: MDState, ff: ForceField, dt: float) -> MDState:
        state = self._rescale(state, 0.5 * dt)
        state = _kick(state, 0.5 * dt)
        state = _drift(self._barostat(state, dt), dt)
        state = _kick(ff.evaluate(state), 0.5 * dt)
        return _advance(self._rescale(state, 0.5 * dt), dt)

    def conserved(self, state: MDState) -> None:
        """None: the barostat's work is not tracked, so there is no conserved
        quantity to report."""
        return None
