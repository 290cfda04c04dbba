"""Phonons of a crystal with phonopy: finite-displacement force constants from
any ASE calculator, the band structure along ASE's standard path, the density
of states and the harmonic thermal properties, and their comparison between a
model and a reference.

Units follow mlipkit (eV, Å, amu, K) except frequencies, which are in THz as
phonopy gives them (imaginary modes as negative numbers). phonopy's thermal
properties (kJ/mol and J/K/mol per primitive cell) are converted to eV and
eV/K per atom.
"""

from __future__ import annotations

import csv
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from mlipkit.errors import InvalidConfig
from mlipkit.properties.engines import attach, require_periodic
from mlipkit.properties.report import compare
from mlipkit.units import kJ_per_mol

log = logging.getLogger(__name__)

# Below this a mode is reported as imaginary: finite differences leave acoustic
# modes near Γ a few 0.01 THz either side of zero.
IMAGINARY_THZ = -0.05
# Above this the undisplaced structure is not at a minimum for the calculator.
RESIDUAL_FORCE_EV_A = 1e-3
THERMAL_KEYS = ("free_energy_eV_per_atom", "entropy_eV_per_K_per_atom",
                "heat_capacity_eV_per_K_per_atom", "zero_point_energy_eV_per_atom")


@dataclass
class Phonons:
    """Harmonic phonons of one crystal with one calculator.

    ``B = 3 * primitive_atoms`` branches. q-points are in fractional
    coordinates of the reciprocal lattice of phonopy's primitive cell.
    """

    path: str                          # ASE band path, e.g. 'GXWKGLUWLK,UX' (',' = jump)
    special_points: dict               # name -> q [3]; 'G' is Γ
    special_frequencies: dict          # name -> [B] THz, ascending
    segments: list                     # [(start name, end name)] of the band path
    band_qpoints: list                 # per segment [K, 3]
    band_distances: list               # per segment [K], cumulative along the path, 1/Å
    band_frequencies: list             # per segment [K, B] THz
    dos_frequencies: np.ndarray        # [F] THz
    dos: np.ndarray                    # [F] states/THz per atom (integrates to 3)
    mesh: tuple                        # (n1, n2, n3), Γ-centred
    mesh_frequencies: np.ndarray       # [Q, B] THz at the irreducible mesh points
    mesh_weights: np.ndarray           # [Q] multiplicities, summing to n1 * n2 * n3
    temperatures: np.ndarray           # [T] K
    free_energy: np.ndarray            # [T] eV/atom, Helmholtz, zero-point energy included
    entropy: np.ndarray                # [T] eV/K/atom
    heat_capacity: np.ndarray          # [T] eV/K/atom, at constant volume
    zero_point_energy: float           # eV/atom
    primitive_atoms: int
    primitive_cell: np.ndarray         # [3, 3] Å, rows are lattice vectors
    supercell_matrix: np.ndarray       # [3, 3] integers, relative to the input cell
    displacement: float                # Å
    displacements: int                 # displaced supercells evaluated
    sum_rule_residual: float           # eV/Å², max |Σ_j Φ_ij| before symmetrization
    symmetrized: bool
    max_residual_force: float          # eV/Å on the undisplaced supercell

    @property
    def lowest_frequency(self) -> float:
        """THz over the mesh and the band path; negative means imaginary."""
        return float(min(self.mesh_frequencies.min(),
                         min(f.min() for f in self.band_frequencies)))


def phonons(atoms: Atoms, calc, supercell=(3, 3, 3), displacement: float = 0.01,
            mesh=(20, 20, 20), t_max: float = 1000.0, t_step: float = 10.0,
            band_points: int = 51, symmetrize: bool = True, primitive_matrix="auto",
            progress: bool = True) -> Phonons:
    """Phonons of the crystal ``atoms`` (never modified) with the ASE calculator ``calc``.

    ``supercell``: 3 repetitions or a [3, 3] integer matrix, relative to the
    cell of ``atoms``. ``displacement`` in Å. ``mesh``: q-points per reciprocal
    axis for the DOS and thermal properties. Temperatures run from 0 to
    ``t_max`` K in steps of ``t_step``. ``primitive_matrix``: ``"auto"``
    (phonopy finds the primitive cell by symmetry), ``None`` (the cell of
    ``atoms`` is the primitive cell), a centring letter or a [3, 3] matrix.
    ``symmetrize`` imposes the acoustic sum rule and index permutation symmetry
    on the force constants; the residual before it is kept either way.
    """
    require_periodic(atoms, "phonons (a molecule has vibrations: mlipkit vib)")
    if displacement <= 0:
        raise InvalidConfig(f"the displacement must be > 0 Å, got {displacement}")
    if t_max <= 0 or t_step <= 0:
        raise InvalidConfig(f"t_max and t_step must be > 0 K, got {t_max} and {t_step}")
    mesh = _mesh(mesh)
    ph = _phonopy(atoms, _supercell_matrix(supercell), primitive_matrix)
    ph.generate_displacements(distance=displacement)
    residual_force, residual = _force_constants(ph, calc, symmetrize, progress)
    result = Phonons(
        **_bands(ph, band_points), **_mesh_properties(ph, mesh, t_max, t_step),
        primitive_atoms=len(ph.primitive), primitive_cell=np.array(ph.primitive.cell),
        supercell_matrix=np.array(ph.supercell_matrix), displacement=float(displacement),
        displacements=len(ph.supercells_with_displacements), sum_rule_residual=residual,
        symmetrized=symmetrize, max_residual_force=residual_force)
    if result.lowest_frequency < IMAGINARY_THZ:
        log.warning("imaginary modes down to %.2f THz: the crystal is unstable for this "
                    "calculator, or the supercell is too small", result.lowest_frequency)
    return result


def _supercell_matrix(supercell) -> np.ndarray:
    """[3, 3] integers from 3 repetitions or a matrix."""
    m = np.asarray(supercell, dtype=float)
    if m.shape == (3,):
        m = np.diag(m)
    if m.shape != (3, 3) or not np.allclose(m, np.rint(m)) or np.linalg.det(m) < 0.5:
        raise InvalidConfig(f"the supercell must be 3 positive integers or a 3x3 integer "
                            f"matrix with positive determinant, got {supercell!r}")
    return np.rint(m).astype(int)


def _mesh(mesh) -> tuple:
    m = np.asarray(mesh)
    if m.shape != (3,) or not np.allclose(m, np.rint(m)) or (m < 1).any():
        raise InvalidConfig(f"the q-point mesh must be 3 positive integers, got {mesh!r}")
    return tuple(int(k) for k in np.rint(m))


def _phonopy(atoms: Atoms, supercell_matrix: np.ndarray, primitive_matrix):
    try:
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms
    except ImportError as exc:
        raise InvalidConfig(f"phonons need phonopy ({exc}); install it with "
                            "pip install 'mlipkit[phonons]'") from None

    unitcell = PhonopyAtoms(numbers=atoms.numbers, cell=atoms.cell.array,
                            scaled_positions=atoms.get_scaled_positions(),
                            masses=atoms.get_masses())
    # phonopy < 4 reads None as the identity and phonopy 4 as 'auto': be explicit.
    matrix = np.eye(3) if primitive_matrix is None else primitive_matrix
    with warnings.catch_warnings():
        # phonopy 4 warns that 'auto' changed the cell; that is what we asked for.
        warnings.filterwarnings("ignore", message="primitive_matrix defaulted")
        ph = Phonopy(unitcell, supercell_matrix=supercell_matrix, primitive_matrix=matrix)
    if len(ph.primitive) != len(atoms):
        log.info("phonons of the %d-atom primitive cell of the %d-atom input cell",
                 len(ph.primitive), len(atoms))
    return ph


def _force_constants(ph, calc, symmetrize: bool, progress: bool) -> tuple[float, float]:
    """Forces on every displaced supercell, then phonopy's force constants.

    Returns (largest force on the undisplaced supercell in eV/Å, sum-rule
    residual in eV/Å² before symmetrization). The undisplaced forces are
    subtracted, so a structure slightly off its minimum does not bias
    one-sided displacements.
    """
    perfect = _supercell_forces(ph.supercell, calc)
    residual_force = float(np.linalg.norm(perfect, axis=1).max())
    if residual_force > RESIDUAL_FORCE_EV_A:
        log.warning("forces up to %.2g eV/Å on the undisplaced supercell: relax the "
                    "structure with this calculator first", residual_force)
    cells = ph.supercells_with_displacements
    forces = [_supercell_forces(cell, calc) - perfect
              for cell in tqdm(cells, desc="phonon displacements", unit="supercell",
                               disable=not progress)]
    ph.forces = np.array(forces)
    ph.produce_force_constants(calculate_full_force_constants=True, show_drift=False)
    residual = float(np.abs(ph.force_constants.sum(axis=1)).max())
    if symmetrize:
        ph.symmetrize_force_constants(show_drift=False)
    return residual_force, residual


def _supercell_forces(cell, calc) -> np.ndarray:
    """[N, 3] eV/Å on a phonopy supercell."""
    atoms = Atoms(numbers=cell.numbers, cell=cell.cell, scaled_positions=cell.scaled_positions,
                  masses=cell.masses, pbc=True)
    return attach(atoms, calc).get_forces()


def _bands(ph, points: int) -> dict:
    """Band structure and special-point frequencies (the Phonons fields of the path)."""
    special, path, segments = _band_path(ph.primitive.cell)
    bands = ph.run_band_structure(_band_qpoints(special, segments, ph.primitive.cell, points))
    at_points = ph.run_qpoints(np.array(list(special.values())))
    return {"path": path, "special_points": special,
            "special_frequencies": dict(zip(special, np.array(at_points.frequencies))),
            "segments": segments,
            "band_qpoints": [np.array(q) for q in bands.qpoints],
            "band_distances": [np.array(d) for d in bands.distances],
            "band_frequencies": [np.array(f) for f in bands.frequencies]}


def _mesh_properties(ph, mesh: tuple, t_max: float, t_step: float) -> dict:
    """DOS and thermal properties on a Γ-centred mesh, per atom (the Phonons
    fields of the mesh)."""
    n = len(ph.primitive)
    grid = ph.run_mesh(mesh, is_gamma_center=True)
    dos = ph.run_total_dos()
    # The three acoustic modes at Γ are zero up to noise of either sign; which
    # of them counted would otherwise depend on that sign.
    thermal = ph.run_thermal_properties(t_min=0, t_max=t_max, t_step=t_step,
                                        exclude_gamma_acoustic=True)
    per_atom = kJ_per_mol / n  # phonopy: kJ/mol and J/K/mol of primitive cells
    return {"dos_frequencies": np.array(dos.frequency_points), "dos": np.array(dos.dos) / n,
            "mesh": mesh, "mesh_frequencies": np.array(grid.frequencies),
            "mesh_weights": np.array(grid.weights),
            "temperatures": np.array(thermal.temperatures),
            "free_energy": np.array(thermal.free_energy) * per_atom,
            "entropy": np.array(thermal.entropy) * per_atom / 1000.0,
            "heat_capacity": np.array(thermal.heat_capacity) * per_atom / 1000.0,
            "zero_point_energy": float(thermal.zero_point_energy) * per_atom}


def _band_path(primitive_cell: np.ndarray) -> tuple[dict, str, list]:
    """ASE's standard path for the lattice of the primitive cell.

    ASE gives the special points in fractional coordinates of the reciprocal
    lattice of the cell it is handed (whatever its orientation or setting),
    which is what phonopy expects for its primitive cell.
    """
    from ase.cell import Cell
    from ase.dft.kpoints import parse_path_string

    bandpath = Cell(primitive_cell).bandpath(npoints=0)
    sections = parse_path_string(bandpath.path)  # names may be longer than a letter: 'S1'
    special = {name: np.array(bandpath.special_points[name], dtype=float)
               for name in dict.fromkeys(name for section in sections for name in section)}
    segments = [(a, b) for section in sections for a, b in zip(section[:-1], section[1:])]
    return special, bandpath.path, segments


def _band_qpoints(special: dict, segments: list, primitive_cell: np.ndarray,
                  points: int) -> list[np.ndarray]:
    """[K, 3] q-points per segment, spaced evenly in reciprocal space: the
    longest segment gets ``points``."""
    rec = np.linalg.inv(primitive_cell)  # columns are reciprocal vectors (no 2π)
    lengths = [np.linalg.norm(rec @ (special[b] - special[a])) for a, b in segments]
    longest = max(lengths)
    return [np.linspace(special[a], special[b], max(2, round(points * length / longest)))
            for (a, b), length in zip(segments, lengths)]


def thermal_at(result: Phonons, temperature: float) -> dict:
    """Thermal properties at ``temperature`` K, linear in T between grid points."""
    t = result.temperatures
    if not t[0] <= temperature <= t[-1]:
        raise InvalidConfig(f"{temperature} K is outside the computed range {t[0]:g}-"
                            f"{t[-1]:g} K; raise t_max (--tmax)")
    return {"temperature_K": float(temperature),
            "free_energy_eV_per_atom": float(np.interp(temperature, t, result.free_energy)),
            "entropy_eV_per_K_per_atom": float(np.interp(temperature, t, result.entropy)),
            "heat_capacity_eV_per_K_per_atom": float(np.interp(temperature, t,
                                                               result.heat_capacity)),
            "zero_point_energy_eV_per_atom": result.zero_point_energy}


def summary(result: Phonons, temperature: float = 300.0) -> dict:
    """The JSON-ready figures of one calculation."""
    return {
        "path": result.path,
        "special_points": result.special_points,
        "frequencies_THz": result.special_frequencies,
        "lowest_frequency_THz": result.lowest_frequency,
        "highest_frequency_THz": float(result.mesh_frequencies.max()),
        "primitive_atoms": result.primitive_atoms,
        "primitive_cell_A": result.primitive_cell,
        "supercell_matrix": result.supercell_matrix,
        "displacement_A": result.displacement,
        "displaced_supercells": result.displacements,
        "mesh": result.mesh,
        "sum_rule_residual_eV_A2": result.sum_rule_residual,
        "symmetrized": result.symmetrized,
        "max_residual_force_eV_A": result.max_residual_force,
        "thermal": thermal_at(result, temperature),
    }


def compare_phonons(model: Phonons, reference: Phonons, temperature: float = 300.0) -> dict:
    """Model − reference: frequencies at the special points per branch (THz,
    branches sorted by frequency), over the whole band path, and the thermal
    properties at ``temperature`` K."""
    if not _same_path(model, reference):
        raise InvalidConfig("the model and reference phonons were computed for different "
                            "crystals or band paths; use the same structure and primitive cell")
    points = {}
    for name, m in model.special_frequencies.items():
        error = m - reference.special_frequencies[name]
        points[name] = {"model": m, "reference": reference.special_frequencies[name],
                        "error": error, "max_abs_error": float(np.abs(error).max())}
    band_error = np.concatenate([(m - r).reshape(-1) for m, r in
                                 zip(model.band_frequencies, reference.band_frequencies)])
    return {
        "frequencies_THz": points,
        "max_abs_error_THz": max(p["max_abs_error"] for p in points.values()),
        "band_rms_error_THz": float(np.sqrt(np.mean(band_error ** 2))),
        "band_max_abs_error_THz": float(np.abs(band_error).max()),
        "temperature_K": float(temperature),
        "thermal": compare(thermal_at(model, temperature), thermal_at(reference, temperature),
                           THERMAL_KEYS),
    }


def _same_path(a: Phonons, b: Phonons) -> bool:
    """The same band path in fractional coordinates: the same crystal at
    possibly different lattice constants (each calculator's own equilibrium)."""
    return (a.primitive_atoms == b.primitive_atoms and a.segments == b.segments
            and a.special_points.keys() == b.special_points.keys()
            and all(np.allclose(a.special_points[k], b.special_points[k], atol=1e-6)
                    for k in a.special_points)
            and [q.shape for q in a.band_qpoints] == [q.shape for q in b.band_qpoints])


# ---------------------------------------------------------------- raw data

def write_csv(directory, model: Phonons, reference: Phonons | None = None) -> list[Path]:
    """band.csv, dos.csv and thermal.csv in ``directory``; the first column says
    which calculator (model or reference) a row belongs to."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    results = [("model", model)] + ([("reference", reference)] if reference is not None else [])
    branches = 3 * model.primitive_atoms
    band = [[who, f"{a}-{b}", x, *q, *f] for who, r in results
            for (a, b), qs, xs, fs in zip(r.segments, r.band_qpoints, r.band_distances,
                                          r.band_frequencies)
            for q, x, f in zip(qs, xs, fs)]
    dos = [[who, f, d] for who, r in results for f, d in zip(r.dos_frequencies, r.dos)]
    thermal = [[who, *row] for who, r in results for row in
               zip(r.temperatures, r.free_energy, r.entropy, r.heat_capacity)]
    tables = {
        "band.csv": (["calculator", "segment", "distance_inv_A", "q1", "q2", "q3",
                      *[f"branch_{k}_THz" for k in range(branches)]], band),
        "dos.csv": (["calculator", "frequency_THz", "dos_per_THz_per_atom"], dos),
        "thermal.csv": (["calculator", "temperature_K", "free_energy_eV_per_atom",
                         "entropy_eV_per_K_per_atom", "heat_capacity_eV_per_K_per_atom"],
                        thermal),
    }
    paths = []
    for name, (header, rows) in tables.items():
        with open(directory / name, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        paths.append(directory / name)
    return paths
