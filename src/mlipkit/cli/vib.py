"""`mlipkit vib MODEL STRUCTURE --out DIR [--reference CALC]`."""

from __future__ import annotations

from pathlib import Path

from mlipkit.cli import _properties as common

# Below this a mode counts as imaginary; finite differences leave soft modes
# a few cm^-1 either side of zero.
IMAGINARY_CM = -20.0

HELP = "harmonic vibrational frequencies and normal modes, optionally against a reference"


def add_arguments(parser) -> None:
    common.add_common(parser)
    parser.add_argument("--hessian", choices=["auto", "exact", "fd"], default="auto",
                        help="model Hessian: exact (autograd, mlipkit models), fd (finite "
                        "differences), auto (exact when possible); the reference always uses fd")
    parser.add_argument("--delta", type=float, default=0.005,
                        help="finite-difference displacement, Å")
    parser.add_argument("--no-relax", action="store_true",
                        help="use the structure as given (frequencies are only meaningful at "
                        "a stationary point)")
    parser.add_argument("--fmax", type=float, default=1e-3,
                        help="relaxation threshold before the Hessian, eV/Å")


def run(args) -> int:
    import numpy as np
    from ase.io import write

    from mlipkit.properties.engines import hessian, label
    from mlipkit.properties.plots import vibrations_plot
    from mlipkit.properties.relax import relax
    from mlipkit.properties.vibrations import acoustic_sum_rule, diagnostics, normal_modes

    calc, reference = common.engines(args)
    atoms = common.structure(args)
    result = {"model": label(calc), "atoms": len(atoms)}
    if not args.no_relax:
        relaxed = relax(atoms, calc, fmax=args.fmax)
        atoms = relaxed.atoms
        result["relaxation"] = relaxed.as_dict()
    h = hessian(atoms, calc, method=args.hessian, delta=args.delta)
    modes = normal_modes(h, atoms)
    result.update(wavenumbers_cm=modes.wavenumbers,
                  imaginary_modes=int((modes.wavenumbers < IMAGINARY_CM).sum()),
                  acoustic_sum_rule=acoustic_sum_rule(h))
    out = Path(args.out)
    frames = []
    for k, nu in enumerate(modes.wavenumbers):
        frame = atoms.copy()
        frame.calc = None
        frame.info.update(mode=k, wavenumber_cm=float(nu))
        frame.new_array("mode", modes.displacements[k])
        frames.append(frame)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "modes.extxyz", frames, format="extxyz")
    overlap = ref_cm = None
    if reference is not None:
        diag = diagnostics(h, hessian(atoms, reference, method="fd", delta=args.delta), atoms)
        result["reference"] = label(reference)
        result["comparison"] = diag
        ref_cm, overlap = diag["reference_cm"], diag["overlap"]
    vibrations_plot(np.asarray(modes.wavenumbers) if ref_cm is None else diag["model_cm"],
                    out / "vib.png", ref_cm, overlap)
    common.finish(args, "vib", result)
    return 0
