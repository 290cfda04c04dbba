"""Harmonic vibrations from a Hessian: frequencies, normal modes and
diagnostics of a model's Hessian against a reference one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from scipy.optimize import linear_sum_assignment

from mlipkit.errors import InvalidStructure
from mlipkit.units import amu_A2_per_fs2

C_CM_PER_FS = 2.99792458e-5  # speed of light


def wavenumber(eigenvalue: np.ndarray) -> np.ndarray:
    """Mass-weighted Hessian eigenvalues (eV/Å²/amu) to cm⁻¹; imaginary modes negative."""
    omega = np.sqrt(np.abs(eigenvalue) / amu_A2_per_fs2)  # rad/fs
    return np.sign(eigenvalue) * omega / (2.0 * np.pi * C_CM_PER_FS)


def rigid_motions(atoms: Atoms) -> np.ndarray:
    """Orthonormal mass-weighted translations (and rotations for a free
    molecule) [3N, k]: k = 6, 5 for a linear molecule, 3 with any periodicity."""
    masses = atoms.get_masses()
    sqrt_m = np.repeat(np.sqrt(masses), 3)
    n = len(atoms)
    vectors = []
    for axis in range(3):
        t = np.zeros((n, 3))
        t[:, axis] = 1.0
        vectors.append(t.reshape(-1) * sqrt_m)
    if not atoms.pbc.any():
        x = atoms.get_positions() - atoms.get_center_of_mass()
        for axis in np.eye(3):
            vectors.append(np.cross(axis, x).reshape(-1) * sqrt_m)
    u, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return u[:, s > 1e-6 * s.max()]


@dataclass
class Modes:
    """Internal vibrations: rigid translations/rotations projected out."""

    eigenvalues: np.ndarray    # [M] of the mass-weighted Hessian, eV/Å²/amu, ascending
    vectors: np.ndarray        # [3N, M] orthonormal mass-weighted eigenvectors
    displacements: np.ndarray  # [M, N, 3] Cartesian normal modes, each of unit norm

    @property
    def wavenumbers(self) -> np.ndarray:
        """[M] cm⁻¹, imaginary modes as negative numbers."""
        return wavenumber(self.eigenvalues)


def mass_weighted(hessian: np.ndarray, atoms: Atoms) -> np.ndarray:
    if hessian.shape != (3 * len(atoms), 3 * len(atoms)):
        raise InvalidStructure(f"the Hessian has shape {hessian.shape}; {len(atoms)} atoms "
                               f"need ({3 * len(atoms)}, {3 * len(atoms)})")
    w = 1.0 / np.repeat(np.sqrt(atoms.get_masses()), 3)
    d = hessian * w[:, None] * w[None, :]
    return 0.5 * (d + d.T)


def normal_modes(hessian: np.ndarray, atoms: Atoms) -> Modes:
    """Diagonalise M^-1/2 H M^-1/2 in the space orthogonal to rigid motions.

    ``hessian`` [3N, 3N] in eV/Å². Working in that complement (rather than
    shifting the rigid eigenvalues) removes them exactly, so a nearly free
    rotation cannot mix with a soft vibration.
    """
    d = mass_weighted(hessian, atoms)
    rigid = rigid_motions(atoms)
    q, _ = np.linalg.qr(np.hstack([rigid, np.eye(d.shape[0])]))
    basis = q[:, rigid.shape[1]:d.shape[0]]
    values, small = np.linalg.eigh(basis.T @ d @ basis)
    vectors = basis @ small
    cart = vectors / np.repeat(np.sqrt(atoms.get_masses()), 3)[:, None]
    cart /= np.linalg.norm(cart, axis=0, keepdims=True)
    return Modes(values, vectors, cart.T.reshape(-1, len(atoms), 3))


def acoustic_sum_rule(hessian: np.ndarray) -> float:
    """max_i |Σ_j Φ_ij| (eV/Å²): zero for any translation-invariant energy."""
    n = hessian.shape[0] // 3
    blocks = hessian.reshape(n, 3, n, 3).sum(axis=2)  # [N, 3, 3]
    return float(np.abs(blocks).max())


def diagnostics(model_hessian: np.ndarray, reference_hessian: np.ndarray, atoms: Atoms) -> dict:
    """Compare two Hessians of the same geometry, mode by mode.

    - ``frequency_errors_cm``: model − reference wavenumber per reference mode,
      each reference mode paired with the model mode it overlaps most
      (an optimal one-to-one assignment, so near-degenerate pairs do not swap);
    - ``modal_scaling``: the reference modes' curvature under the model,
      q·D_model·q / q·D_ref·q (1 for a perfect model, < 1 where it is too soft);
    - ``overlap``: |Q_modelᵀ Q_ref| [M, M], the mode-mixing matrix;
    - ``acoustic_sum_rule``: residual of each Hessian (eV/Å²).
    """
    model = normal_modes(model_hessian, atoms)
    ref = normal_modes(reference_hessian, atoms)
    overlap = np.abs(model.vectors.T @ ref.vectors)
    rows, cols = linear_sum_assignment(-overlap)
    pair = np.empty_like(cols)
    pair[cols] = rows  # model mode paired with each reference mode
    d_model = mass_weighted(model_hessian, atoms)
    along = np.einsum("ki,kl,li->i", ref.vectors, d_model, ref.vectors)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaling = np.where(np.abs(ref.eigenvalues) > 0, along / ref.eigenvalues, np.nan)
    errors = model.wavenumbers[pair] - ref.wavenumbers
    return {
        "reference_cm": ref.wavenumbers,
        "model_cm": model.wavenumbers[pair],
        "frequency_errors_cm": errors,
        "frequency_mae_cm": float(np.abs(errors).mean()) if errors.size else 0.0,
        "frequency_max_error_cm": float(np.abs(errors).max()) if errors.size else 0.0,
        "modal_scaling": scaling,
        "overlap": overlap,
        "paired_overlap": overlap[pair, np.arange(len(pair))],
        "acoustic_sum_rule": {"model": acoustic_sum_rule(model_hessian),
                              "reference": acoustic_sum_rule(reference_hessian)},
    }
