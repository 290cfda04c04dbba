"""`mlipkit md` end to end on a saved model."""

from __future__ import annotations

import json

import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import read, write

from mlipkit.cli import main
from mlipkit.models.checkpoint import save
from tests.conftest import CU_REF, build_potential, triclinic_cu


@pytest.fixture(scope="module")
def cu_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "cu.safetensors"
    frames = [triclinic_cu(seed=s) for s in range(4)]
    save(build_potential(["Cu"], frames, CU_REF, torch.float32), path)
    return path


@pytest.mark.parametrize("ensemble", ["nvt-langevin", "npt"])
def test_md_command_writes_its_outputs(cu_model, tmp_path, ensemble, capsys):
    structure = tmp_path / "cu.extxyz"
    write(structure, bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2))
    out = tmp_path / "run"
    extra = ["--rdf", "5", "--msd", "--check-stability"] if ensemble == "nvt-langevin" else []
    code = main(["--quiet", "md", str(cu_model), str(structure), "--ensemble", ensemble,
                 "--temperature", "300", "--timestep", "1", "--steps", "20", "--replicas", "3",
                 "--log-interval", "5", "--traj-interval", "10", "--out", str(out), *extra])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicas"] == 3 and summary["atoms"] == 96 and summary["steps"] == 20
    assert summary["ns_per_day"] > 0 and len(summary["final_temperature_K"]) == 3
    rows = (out / "thermo.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 5
    assert len(read(out / "trajectory_2.extxyz", index=":")) == 3
    final = read(out / "final.extxyz", index=":")
    assert len(final) == 3 and final[0].info["md_step"] == 20
    assert (out / "thermo.png").stat().st_size > 1000
    if extra:
        assert summary["stability"]["stable"] and summary["stability"]["max_timestep"] > 1.0
        assert len((out / "rdf.csv").read_text().splitlines()) == 121
        assert (out / "rdf.png").exists()
        assert (out / "msd.csv").read_text().startswith("time_fs,replica_0_A2,replica_1_A2")
    if ensemble == "npt":
        assert rows[0].split(",")[9] == "pressure_gpa" and rows[-1].split(",")[9] != ""


def test_md_command_rejects_an_element_the_model_lacks(cu_model, tmp_path, capsys):
    structure = tmp_path / "water.xyz"
    write(structure, molecule("H2O"))
    code = main(["--quiet", "md", str(cu_model), str(structure), "--steps", "5",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "['Cu']" in err[0] and "['H', 'O']" in err[0]


def test_md_command_refuses_an_unstable_time_step(cu_model, tmp_path, capsys):
    """A dimer pressed into the ZBL wall vibrates with a period of ~24 fs: 10 fs is
    beyond the Verlet limit (ω·dt < 2), 5 fs within it."""
    structure = tmp_path / "cu2.xyz"
    write(structure, Atoms("Cu2", positions=[[0, 0, 0], [1.6, 0, 0]]))
    args = ["--quiet", "md", str(cu_model), str(structure), "--ensemble", "nve",
            "--check-stability", "--steps", "2", "--out", str(tmp_path / "run")]
    assert main([*args, "--timestep", "10"]) == 2
    assert "is unstable for the stiffest mode" in capsys.readouterr().err
    assert main([*args, "--timestep", "5"]) == 0


def test_md_command_converts_pressure_and_compressibility():
    from types import SimpleNamespace

    from mlipkit.cli.md import _integrator
    from mlipkit.units import GPa

    args = SimpleNamespace(ensemble="npt", temperature=300.0, pressure=2.0, tau=100.0,
                           tau_p=1000.0, compressibility=0.01, seed=0, friction=0.01)
    baro = _integrator(args)
    assert baro.pressure == pytest.approx(2.0 * GPa)  # eV/Å³
    assert baro.compressibility == pytest.approx(0.01 / GPa)
