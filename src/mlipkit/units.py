"""Units used inside mlipkit and the conversions to the units of other codes.

Internally every quantity is in eV, Å, fs, amu, K and elementary charges.
Stress is in eV/Å³. These constants are the only place conversions live.
"""

from ase import units as _ase

# Energy
eV = 1.0
kcal_per_mol = _ase.kcal / _ase.mol  # 0.0433641 eV
kJ_per_mol = _ase.kJ / _ase.mol
Hartree = _ase.Hartree
Rydberg = _ase.Rydberg
meV = 1e-3

# Length
Angstrom = 1.0
Bohr = _ase.Bohr
nm = 10.0

# Time (ASE's internal time unit is Å·sqrt(amu/eV); we keep fs explicit)
fs = 1.0
ps = 1000.0
ase_time_per_fs = _ase.fs  # multiply a time in fs by this to get ASE time units

# Mass, temperature, charge
amu = 1.0
kB = _ase.kB  # eV/K
e = 1.0

# Pressure / stress: eV/Å³ to ...
GPa = _ase.GPa  # 1 GPa in eV/Å³
bar = _ase.bar

# Derived: ħ in eV·fs
hbar = _ase._hbar / _ase._e * 1e15
# 1 amu·Å²/fs² in eV (kinetic energy of momenta in amu·Å/fs), ≈ 103.64
amu_A2_per_fs2 = _ase._amu * 1e10 / _ase._e

__all__ = [
    "eV", "kcal_per_mol", "kJ_per_mol", "Hartree", "Rydberg", "meV",
    "Angstrom", "Bohr", "nm", "fs", "ps", "ase_time_per_fs",
    "amu", "kB", "e", "GPa", "bar", "hbar", "amu_A2_per_fs2",
]
