"""`mlipkit vacancy MODEL STRUCTURE --out DIR [--reference CALC]`."""

from __future__ import annotations

from pathlib import Path

from mlipkit.cli import _properties as common

HELP = "vacancy formation energies with relaxation: one per distinct site (alloys: a histogram)"


def add_arguments(parser) -> None:
    common.add_common(parser)
    parser.add_argument("--repeat", type=int, nargs=3, metavar="N",
                        help="build the supercell from STRUCTURE (e.g. 3 3 3)")
    parser.add_argument("--sites", type=int, nargs="*",
                        help="indices to remove (default: one of every distinct site)")
    parser.add_argument("--mu", nargs="*", default=[], metavar="EL=eV",
                        help="chemical potential per element, e.g. Cu=-3.5 Ni=-4.4 (default: "
                        "the supercell's energy per atom, exact for a pure element)")
    parser.add_argument("--fmax", type=float, default=0.01, help="relaxation threshold, eV/Å")
    common.add_no_relax(parser)


def _chemical_potentials(items: list[str]) -> dict:
    mu = {}
    for item in items:
        symbol, _, value = item.partition("=")
        try:
            mu[symbol] = float(value)
        except ValueError:
            raise ValueError(f"--mu takes ELEMENT=eV, got {item!r}") from None
    return mu


def run(args) -> int:
    from mlipkit.properties.defects import vacancy_energies
    from mlipkit.properties.engines import label
    from mlipkit.properties.plots import vacancy_plot
    from mlipkit.properties.report import compare

    calc, reference = common.engines(args)
    atoms = common.structure(args)

    def supercell(calc):
        relaxed = common.equilibrium(atoms, calc, args)
        return relaxed.repeat(args.repeat) if args.repeat else relaxed
    options = dict(sites=args.sites, chemical_potentials=_chemical_potentials(args.mu),
                   fmax=args.fmax, progress=not args.quiet)
    model = vacancy_energies(supercell(calc), calc, **options)
    result = {"model": label(calc), **model}
    ref = None
    if reference is not None:
        ref = vacancy_energies(supercell(reference), reference, **options)
        result["reference"] = {"calculator": label(reference), **ref}
        keys = ("mean_formation_energy_eV", "std_formation_energy_eV",
                "min_formation_energy_eV", "max_formation_energy_eV")
        result["comparison"] = {
            **compare(model, ref, keys),
            "per_site_error_eV": [m["formation_energy_eV"] - r["formation_energy_eV"]
                                  for m, r in zip(model["sites"], ref["sites"])],
        }
    vacancy_plot(model, Path(args.out) / "vacancy.png", ref)
    common.finish(args, "vacancy", result)
    return 0
