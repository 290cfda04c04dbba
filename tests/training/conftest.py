"""Shared fixtures of the training tests: EMT-labelled data files, a config writer, a trained run.

The reference labels come from ASE's EMT calculator. Structures are 2x2x2
supercells of cubic fcc Cu (32 atoms), strained by up to 2 % and rattled, so
that energies, forces and stresses all vary. Models are kept tiny (one hidden
layer of 8 units, few descriptor functions) so that an epoch takes a fraction of
a second; torch runs on one thread, which on this small work is also the fastest.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from mlipkit.data import from_atoms, write_extxyz
from mlipkit.training.config import load_config
from mlipkit.training.run import train

# the console script beside the running interpreter (.venv/bin/mlipkit)
MLIPKIT = Path(sys.executable).with_name("mlipkit")

# a tiny BPNN: overrides applied to every config of these tests
TINY_MODEL = {"hidden": [8], "n_radial": 4, "n_angular_radial": 2, "zetas": [1, 2],
              "cutoff": 4.0}

LOG_KEYS = ("epoch", "time", "lr", "train_loss", "valid_loss", "valid_energy_mae",
            "valid_energy_mae_per_atom", "valid_forces_mae", "valid_stress_mae")


def emt_labelled(atoms):
    """``atoms`` as a Batch labelled with EMT energy, forces and (periodic) stress."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        labels["stress"] = atoms.get_stress()
    return from_atoms(atoms, labels=labels)


def cu_structures(n: int, seed: int, rattle: float = 0.08, gold: int = 0) -> list:
    """``n`` strained and rattled 32-atom Cu cells (``gold`` of their atoms swapped for Au)."""
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    frames = []
    for _ in range(n):
        atoms = base.copy()
        strain = np.eye(3) + np.diag(rng.uniform(-0.02, 0.02, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(rattle, seed=int(rng.integers(1 << 30)))
        if gold:
            symbols = atoms.get_chemical_symbols()
            for i in rng.choice(len(atoms), size=gold, replace=False):
                symbols[i] = "Au"
            atoms.set_chemical_symbols(symbols)
        frames.append(emt_labelled(atoms))
    return frames


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Labelled extxyz files: Cu train/valid/test, Cu with some Au, and water molecules."""
    d = tmp_path_factory.mktemp("data")
    write_extxyz(d / "cu_train.xyz", cu_structures(24, seed=1))
    write_extxyz(d / "cu_valid.xyz", cu_structures(6, seed=2))
    write_extxyz(d / "cu_test.xyz", cu_structures(6, seed=3))
    write_extxyz(d / "cu_au.xyz", cu_structures(3, seed=4, gold=2))
    water = []
    for k in range(3):
        atoms = molecule("H2O")
        atoms.rattle(0.05, seed=k)
        water.append(emt_labelled(atoms))
    write_extxyz(d / "water.xyz", water)
    return d


def write_config(path: Path, train: Path, output: Path, valid: Path | None = None,
                 test: Path | None = None, **training) -> Path:
    """A YAML run config with the tiny model; ``training`` entries go to the training section."""
    data = {"train": str(train), "valid_fraction": 0.25}
    if valid is not None:
        data["valid"] = str(valid)
    if test is not None:
        data["test"] = str(test)
    settings = {"max_epochs": 3, "batch_size": 4, "lr": 2.0e-3, "warmup_epochs": 0,
                "dtype": "float64", **training}
    config = {"data": data, "model": dict(TINY_MODEL), "training": settings,
              "output": str(output)}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_log(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        assert tuple(row) == LOG_KEYS, f"{path}: columns {list(row)}"
    return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in rows]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir, one_thread):
    """One real training run (15 epochs, float64) with a validation and a test file.

    Returns (run folder, the RunConfig trained with, the metrics ``train`` returned).
    Tests must not modify the folder; copy it first (``copy_run``).
    """
    root = tmp_path_factory.mktemp("trained")
    cfg = write_config(root / "config.yaml", data_dir / "cu_train.xyz", root / "run",
                       valid=data_dir / "cu_valid.xyz", test=data_dir / "cu_test.xyz",
                       max_epochs=15, warmup_epochs=1, early_stopping_patience=None)
    config = load_config(cfg)
    metrics = train(config, progress=False)
    return root / "run", config, metrics


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    return target
