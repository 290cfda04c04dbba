"""The state of a batch of MD replicas, as tensors.

Units: positions Å (unwrapped: atoms are never wrapped back into the cell,
so displacements and diffusion are read off directly), momenta amu·Å/fs,
masses amu, forces eV/Å, energies eV, stress eV/Å³, time fs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from ase.constraints import FixAtoms

from mlipkit.data.batch import Batch
from mlipkit.data.convert import atoms_to_batch, to_atoms
from mlipkit.errors import InvalidConfig
from mlipkit.units import amu_A2_per_fs2, ase_time_per_fs, kB


@dataclass(frozen=True)
class MDState:
    """Replicas (structures) of one batch and everything an integrator needs.

    ``batch`` holds positions, cell, species and the current neighbor list;
    ``forces``, ``energy`` (and ``stress`` when the ensemble needs it) belong
    to those positions. ``fixed`` marks atoms that never move. With
    ``remove_com`` the centre-of-mass momentum of every replica is kept at
    zero. ``thermostat`` holds per-replica integrator variables [B, ...];
    ``outputs`` any further potential outputs (``energy_std``,
    ``forces_std`` of an ensemble).
    """

    batch: Batch
    momenta: torch.Tensor  # [N, 3]
    masses: torch.Tensor  # [N]
    forces: torch.Tensor  # [N, 3]
    energy: torch.Tensor  # [B]
    fixed: torch.Tensor  # [N] bool
    remove_com: bool = True
    stress: torch.Tensor | None = None  # [B, 3, 3]
    step: int = 0
    time: float = 0.0  # fs
    thermostat: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def replace(self, **changes) -> MDState:
        return dataclasses.replace(self, **changes)

    def select(self, replicas: Sequence[int]) -> MDState:
        """The state of the given replicas only, in that order: positions,
        momenta, fixed atoms, forces, energies and per-replica thermostat
        variables carry over. The neighbor list and the potential's further
        ``outputs`` are dropped (the next evaluation rebuilds them)."""
        keep = [int(k) for k in replicas]
        if not keep or min(keep) < 0 or max(keep) >= self.n_replicas:
            raise InvalidConfig(f"replicas to keep must be a non-empty list in "
                                f"0..{self.n_replicas - 1}, got {keep}")
        parts = self.batch.without("edge_index", "shifts").split()
        atoms = torch.cat([torch.nonzero(self.system == k).squeeze(-1) for k in keep])
        index = torch.tensor(keep, device=self.energy.device)
        return self.replace(
            batch=Batch.collate([parts[k] for k in keep]), momenta=self.momenta[atoms],
            masses=self.masses[atoms], forces=self.forces[atoms], energy=self.energy[index],
            fixed=self.fixed[atoms], stress=None if self.stress is None else self.stress[index],
            thermostat={k: v[index] for k, v in self.thermostat.items()}, outputs={})

    @property
    def positions(self) -> torch.Tensor:
        return self.batch.positions

    @property
    def n_replicas(self) -> int:
        return self.batch.n_structures

    @property
    def system(self) -> torch.Tensor:
        return self.batch.system

    def per_replica(self, values: torch.Tensor) -> torch.Tensor:
        """Sum per-atom values [N] over each replica: [B]."""
        return values.new_zeros(self.n_replicas).index_add(0, self.system, values)

    def replica_max(self, values: torch.Tensor) -> torch.Tensor:
        """Largest of per-atom values [N] in each replica: [B]."""
        out = values.new_full((self.n_replicas,), -torch.inf)
        return out.scatter_reduce(0, self.system, values, "amax")

    def kinetic_energy(self) -> torch.Tensor:
        """[B] eV."""
        ke = (self.momenta**2).sum(-1) / (2.0 * self.masses)
        return self.per_replica(ke) * amu_A2_per_fs2

    def degrees_of_freedom(self) -> torch.Tensor:
        """[B]: 3 per moving atom, less 3 when the centre of mass is held still."""
        free = self.per_replica((~self.fixed).to(self.momenta.dtype)) * 3.0
        return free - 3.0 if self.remove_com else free

    def temperature(self) -> torch.Tensor:
        """Instantaneous kinetic temperature [B] in K."""
        return 2.0 * self.kinetic_energy() / (self.degrees_of_freedom().clamp(min=1.0) * kB)

    def volume(self) -> torch.Tensor:
        """[B] Å³ (zero for a replica without a cell)."""
        return torch.linalg.det(self.batch.cell).abs()

    def pressure(self) -> torch.Tensor:
        """Instantaneous pressure [B] in eV/Å³: kinetic part plus −tr(σ)/3."""
        if self.stress is None:
            raise InvalidConfig("pressure needs the stress; evaluate with stress=True")
        kinetic = 2.0 * self.kinetic_energy() / (3.0 * self.volume())
        return kinetic - torch.diagonal(self.stress, dim1=1, dim2=2).sum(-1) / 3.0

    def to_atoms(self) -> list[Atoms]:
        """One ase.Atoms per replica (positions wrapped into periodic cells)
        with momenta, energy and forces."""
        frames = to_atoms(self.batch.without("edge_index", "shifts"))
        start = 0
        for b, atoms in enumerate(frames):
            sl = slice(start, start + len(atoms))
            start += len(atoms)
            atoms.set_masses(self.masses[sl].detach().cpu().double().numpy())
            # ASE momenta are amu·Å per ASE time unit
            momenta = self.momenta[sl].detach().cpu().double().numpy() / ase_time_per_fs
            atoms.set_momenta(momenta)
            atoms.info["energy"] = float(self.energy[b])
            atoms.info["md_step"] = self.step
            atoms.info["md_time_fs"] = self.time
            atoms.arrays["forces"] = self.forces[sl].detach().cpu().double().numpy()
            if atoms.pbc.any():
                atoms.wrap()
        return frames


def com_free(momenta: torch.Tensor, masses: torch.Tensor, system: torch.Tensor,
             n_replicas: int) -> torch.Tensor:
    """Momenta with each replica's centre-of-mass velocity removed."""
    total = momenta.new_zeros(n_replicas, 3).index_add(0, system, momenta)
    mass = masses.new_zeros(n_replicas).index_add(0, system, masses)
    return momenta - masses.unsqueeze(-1) * (total / mass.unsqueeze(-1))[system]


def maxwell_boltzmann(masses: torch.Tensor, temperature: float,
                      rng: np.random.Generator) -> torch.Tensor:
    """Momenta [N, 3] drawn at ``temperature`` K."""
    sigma = torch.sqrt(masses * kB * temperature / amu_A2_per_fs2).unsqueeze(-1)
    noise = torch.from_numpy(rng.standard_normal((masses.shape[0], 3)))
    return sigma * noise.to(masses)


def initial_state(structures: Atoms | Sequence[Atoms], temperature: float = 0.0,
                  seed: int = 0, fixed: Sequence[int] | None = None, remove_com: bool = True,
                  dtype: torch.dtype = torch.float64, device="cpu") -> MDState:
    """Replicas from ase.Atoms with Maxwell–Boltzmann momenta at ``temperature``.

    Momenta already set on the Atoms are kept when ``temperature`` is 0.
    ``fixed`` lists atom indices (within each replica) that never move, as do
    atoms under an ASE ``FixAtoms`` constraint; the centre of mass is then not
    held still. Forces are not yet evaluated
    (see :meth:`mlipkit.md.ForceField.evaluate`).
    """
    frames = [structures] if isinstance(structures, Atoms) else list(structures)
    if not frames:
        raise InvalidConfig("no structures to simulate")
    batch = atoms_to_batch(frames, dtype=dtype).to(device)
    masses = torch.tensor(np.concatenate([a.get_masses() for a in frames]), dtype=dtype,
                          device=device)
    fixed_mask = torch.zeros(batch.n_total_atoms, dtype=torch.bool, device=device)
    start = 0
    for a in frames:
        idx = set(int(i) for i in fixed or ())
        for c in a.constraints:  # ASE FixAtoms, e.g. POSCAR selective dynamics
            if isinstance(c, FixAtoms):
                idx.update(int(i) for i in c.get_indices())
        if idx and (min(idx) < 0 or max(idx) >= len(a)):
            raise InvalidConfig(f"fixed atom indices must lie in 0..{len(a) - 1}")
        fixed_mask[[start + i for i in sorted(idx)]] = True
        start += len(a)
    if bool(fixed_mask.any()):
        remove_com = False
    if temperature > 0:
        momenta = maxwell_boltzmann(masses, temperature, np.random.default_rng([seed, 0]))
    else:
        momenta = torch.tensor(np.concatenate([a.get_momenta() for a in frames]) *
                               ase_time_per_fs, dtype=dtype, device=device)
    momenta = momenta.masked_fill(fixed_mask.unsqueeze(-1), 0.0)
    if remove_com:
        momenta = com_free(momenta, masses, batch.system, batch.n_structures)
    zeros = torch.zeros_like(momenta)
    return MDState(batch=batch, momenta=momenta, masses=masses, forces=zeros,
                   energy=momenta.new_zeros(batch.n_structures), fixed=fixed_mask,
                   remove_com=remove_com)
