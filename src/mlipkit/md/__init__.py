"""Molecular dynamics in tensors: many replicas per batch, Verlet neighbor
lists, thermostats and barostats, observers and guards.

    state = initial_state(atoms, temperature=300, seed=1)
    ff = ForceField(potential, skin=1.0)
    state = simulate(state, Langevin(300, friction=0.01), ff, timestep=1.0, steps=1000)
"""

from mlipkit.md.forcefield import ForceField, VerletList
from mlipkit.md.guards import Guard
from mlipkit.md.integrators import (
    Bussi,
    Integrator,
    Langevin,
    NoseHooverChain,
    StochasticCellRescaling,
    VelocityVerlet,
)
from mlipkit.md.observers import (
    MeanSquaredDisplacement,
    Observer,
    RadialDistribution,
    ThermoLog,
    Trajectory,
    UncertaintyMonitor,
)
from mlipkit.md.runner import simulate
from mlipkit.md.state import MDState, initial_state

__all__ = [
    "MDState", "initial_state", "ForceField", "VerletList", "Guard", "Integrator",
    "VelocityVerlet", "Langevin", "Bussi", "NoseHooverChain", "StochasticCellRescaling",
    "Observer", "ThermoLog", "Trajectory", "RadialDistribution", "MeanSquaredDisplacement",
    "UncertaintyMonitor", "simulate",
]
