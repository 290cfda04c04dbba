"""`mlipkit train` / `mlipkit eval` from the command line: JSON, plots and bad input.

Most cases call :func:`mlipkit.cli.main` in-process (fast); a few run the real
``.venv/bin/mlipkit`` executable, side by side, to see exactly what a user sees.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mlipkit.cli import main
from tests.training.conftest import MLIPKIT, copy_run, write_config

pytestmark = pytest.mark.usefixtures("one_thread")

EVAL_KEYS = {"n_structures", "energy_mae", "energy_rmse", "energy_mae_per_atom", "forces_mae",
             "forces_rmse", "forces_mae_per_species", "stress_mae", "stress_rmse"}
PNG = b"\x89PNG\r\n\x1a\n"


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cfg(tmp_path, data_dir) -> Path:
    """A valid config; its output folder does not exist yet."""
    return write_config(tmp_path / "config.yaml", data_dir / "cu_train.xyz", tmp_path / "out")


# -- eval ---------------------------------------------------------------------------
def test_eval_json_prints_one_object_with_the_metrics(capsys, trained_run, data_dir):
    run, _, metrics = trained_run
    code, out, err = cli(capsys, "--quiet", "eval", run / "model.safetensors",
                         data_dir / "cu_test.xyz", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 1
    result = json.loads(out)
    assert EVAL_KEYS <= set(result)
    assert result["n_structures"] == 6
    assert set(result["forces_mae_per_species"]) == {"Cu"}
    # the same model on the same data: the test metrics of the run
    for key in EVAL_KEYS - {"forces_mae_per_species"}:
        assert result[key] == pytest.approx(metrics["test"][key], rel=1e-9), key


def test_eval_text_output(capsys, trained_run, data_dir):
    run, _, _ = trained_run
    code, out, err = cli(capsys, "--quiet", "eval", run, data_dir / "cu_valid.xyz")
    assert code == 0, err
    lines = {line.split(":")[0].strip() for line in out.splitlines()}
    assert EVAL_KEYS <= lines


def test_eval_plots_for_a_run_folder_and_a_model_file(capsys, trained_run, data_dir, tmp_path):
    run, _, _ = trained_run
    parity = {"energy_parity.png", "forces_parity.png", "stress_parity.png"}
    code, _, err = cli(capsys, "--quiet", "eval", run, data_dir / "cu_test.xyz", "--json",
                       "--plots", tmp_path / "from_run")
    assert code == 0, err
    written = {p.name for p in (tmp_path / "from_run").iterdir()}
    assert written == parity | {"learning_curves.png"}
    code, _, err = cli(capsys, "--quiet", "eval", run / "model.safetensors",
                       data_dir / "cu_test.xyz", "--plots", tmp_path / "from_file")
    assert code == 0, err
    assert {p.name for p in (tmp_path / "from_file").iterdir()} == parity
    for path in [*(tmp_path / "from_run").iterdir(), *(tmp_path / "from_file").iterdir()]:
        assert path.read_bytes()[:8] == PNG, path


# -- bad input: exit code 2, one line, no traceback -------------------------------------
def _typo_section(ctx) -> list:
    text = ctx["cfg"].read_text().replace("training:", "trainig:")
    path = ctx["tmp"] / "typo.yaml"
    path.write_text(text)
    return ["train", path]


def _existing_run(ctx) -> list:
    target = copy_run(ctx["run"], ctx["tmp"] / "existing")
    return ["train", ctx["cfg"], f"output={target}"]


BAD_INPUT = {
    "unknown override key": (
        lambda c: ["train", c["cfg"], "training.batchsize=4"],
        "unknown key 'training.batchsize'; did you mean 'training.batch_size'?"),
    "unknown key in the file": (_typo_section, "unknown key 'trainig'"),
    "wrong type": (
        lambda c: ["train", c["cfg"], "training.batch_size=many"],
        "'training.batch_size' must be an integer, got string 'many'"),
    "wrong type, a list": (
        lambda c: ["train", c["cfg"], "training.lr=[1, 2]"], "'training.lr' must be a number"),
    "missing labels": (
        lambda c: ["train", c["cfg"], "data.energy_key=REF_energy"], "no 'REF_energy'"),
    # forces are weighted 100 by default: a named force label that no frame has must not
    # silently turn the run into an energy-only fit
    "missing force labels": (
        lambda c: ["train", c["cfg"], "data.forces_key=REF_forces", "training.max_epochs=1"],
        "REF_forces"),
    "unknown model type": (
        lambda c: ["train", c["cfg"], "model.type=transformer"],
        "'model.type' must be one of 'bpnn'"),
    "missing config file": (
        lambda c: ["train", c["tmp"] / "nowhere.yaml"], "config file not found"),
    "missing data file": (
        lambda c: ["train", c["cfg"], f"data.train={c['tmp'] / 'nowhere.xyz'}"],
        "no such data file"),
    "no config": (lambda c: ["train"], "give a CONFIG.yaml, or --resume RUN_DIR"),
    "resume without a run": (
        lambda c: ["train", "--resume", c["tmp"] / "no_run"], "config file not found"),
    "output holds a run": (_existing_run, "already holds a training run"),
    "eval: element the model lacks (Au)": (
        lambda c: ["eval", c["run"] / "model.safetensors", c["data"] / "cu_au.xyz"],
        "contains ['Au']"),
    "eval: elements the model lacks (H2O)": (
        lambda c: ["eval", c["run"], c["data"] / "water.xyz"], "contains ['H', 'O']"),
    "eval: missing labels": (
        lambda c: ["eval", c["run"], c["data"] / "cu_test.xyz", "--energy-key", "REF_energy"],
        "no 'REF_energy'"),
    "eval: missing model file": (
        lambda c: ["eval", c["tmp"] / "none.safetensors", c["data"] / "cu_test.xyz"],
        "no model file"),
    "eval: not a model file": (
        lambda c: ["eval", c["data"] / "cu_test.xyz", c["data"] / "cu_test.xyz"],
        "not a safetensors file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_ends_with_one_line(case, capsys, cfg, tmp_path, trained_run, data_dir):
    make_args, expected = BAD_INPUT[case]
    ctx = {"cfg": cfg, "tmp": tmp_path, "run": trained_run[0], "data": data_dir}
    args = make_args(ctx)
    existing = copy_before = None
    if case == "output holds a run":
        existing = Path(str(args[-1]).partition("=")[2])
        copy_before = {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    code, out, err = cli(capsys, "--quiet", *args)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mlipkit {args[0]}: error: "), lines[0]
    assert expected in lines[0]
    if existing is not None:  # nothing written so far is lost
        assert {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()} == copy_before


def test_debug_raises_the_exception(capsys, cfg):
    with pytest.raises(ValueError, match="model.type"):
        main(["--debug", "train", str(cfg), "model.type=transformer"])


# -- the real executable ---------------------------------------------------------------
@pytest.fixture(scope="module")
def executable(trained_run, data_dir, tmp_path_factory):
    """Runs of .venv/bin/mlipkit, started together: name -> CompletedProcess-like tuple."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = write_config(tmp / "config.yaml", data_dir / "cu_train.xyz", tmp / "out")
    run = trained_run[0]
    commands = {
        "eval_json": ["eval", run / "model.safetensors", data_dir / "cu_test.xyz", "--json"],
        "missing_labels": ["train", cfg, "data.energy_key=REF_energy"],
        "unknown_element": ["eval", run, data_dir / "cu_au.xyz"],
        "debug": ["--debug", "train", cfg, "model.type=transformer"],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {name: subprocess.Popen([str(MLIPKIT), *map(str, args)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
             for name, args in commands.items()}
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, err)
    return results


def test_executable_eval_json(executable, trained_run):
    code, out, err = executable["eval_json"]
    assert code == 0, err
    assert len(out.splitlines()) == 1
    result = json.loads(out)
    assert EVAL_KEYS <= set(result)
    assert result["forces_mae"] == pytest.approx(trained_run[2]["test"]["forces_mae"], rel=1e-6)


@pytest.mark.parametrize("name", ["missing_labels", "unknown_element"])
def test_executable_error_has_no_traceback(executable, name):
    code, out, err = executable[name]
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    command = "train" if name == "missing_labels" else "eval"
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    assert err.splitlines()[-1] == errors[0]
    assert errors[0].startswith(f"mlipkit {command}: error: ")


def test_executable_debug_shows_the_traceback(executable):
    code, out, err = executable["debug"]
    assert code not in (0, 2)
    assert "Traceback (most recent call last)" in err
    assert "InvalidConfig: 'model.type' must be one of 'bpnn'" in err
