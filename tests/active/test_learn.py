"""`mlipkit learn` end to end on EMT copper: the committee improves on a
held-out EMT test set as rounds add labels, every label is kept, a kill -9
resumes without repeating a finished oracle call, and a failing oracle stops
the run with a report instead of training on garbage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

import mlipkit
from mlipkit.active.config import LearnConfig, load_learn_config
from mlipkit.active.explore import Exploration, explore
from mlipkit.active.loop import Learner, learn
from mlipkit.active.oracles import structure_hash
from mlipkit.active.store import LabelStore
from mlipkit.cli import main
from mlipkit.data import from_atoms
from mlipkit.data.convert import to_atoms
from mlipkit.errors import InvalidConfig, OracleFailures
from mlipkit.models.ensemble import EnsemblePotential
from mlipkit.training.metrics import predict
from tests.conftest import rattled

ROOT = Path(__file__).resolve().parents[2]
SMALL = {
    "oracle": {"calculator": "emt"},
    "executor": {"kind": "inprocess"},
    "seed": {"rattle": 4},
    "explore": {"temperatures": [600, 1200], "steps": 100, "sample_every": 5},
    "select": {"per_round": 6, "lo": 0.03, "hi": 0.5},
    "stop": {"max_rounds": 3},
    "model": {"hidden": [16], "n_radial": 6, "n_angular_radial": 2, "zetas": [1, 2],
              "cutoff": 4.5},
    "training": {"ensemble": 2, "max_epochs": 25, "batch_size": 4, "lr": 0.005,
                 "warmup_epochs": 0, "dtype": "float64"},
}


def _files(folder: Path) -> tuple[Path, Path]:
    cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    vacancy = cell.copy()
    del vacancy[0]
    ase.io.write(folder / "starts.xyz", [cell, vacancy])
    ase.io.write(folder / "test.xyz", rattled(cell, 8, 0.1, seed=100))
    return folder / "starts.xyz", folder / "test.xyz"


def _config(folder: Path, **changes) -> Path:
    starts, test = _files(folder)
    raw = {"structures": str(starts), "test": str(test), **SMALL,
           "output": str(folder / "run"), **changes}
    path = folder / "learn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("learn")
    config = load_learn_config(_config(folder))
    last = learn(config, progress=False)
    return folder / "run", last


def test_rounds_add_labels_and_the_test_error_falls(finished):
    run, last = finished
    history = json.loads((run / "history.json").read_text())
    assert [h["round"] for h in history] == [0, 1, 2] and last == history[-1]
    assert last["stop"] == "3 rounds done"
    assert [h["oracle_calls"] for h in history] == [10, 16, 22]  # 2 starts x 5 seeds, +6, +6
    assert [h.get("reseeded") for h in history[:2]] == [0, 0]  # the exploration gave them
    assert history[-1]["test_forces_rmse"] < 0.5 * history[0]["test_forces_rmse"]
    store = LabelStore(run / "labels.db")
    assert store.counts() == {"queued": 0, "ok": 30, "failed": 0}  # 22 + 8 test
    hashes = [row.hash for row in store.db.select()]
    assert len(set(hashes)) == len(hashes)
    model = mlipkit.load(run / "model.safetensors")
    assert isinstance(model, EnsemblePotential) and len(model.members) == 2
    for name in ("learning_curve.png", "uncertainty.png"):
        assert (run / "report" / name).stat().st_size > 10_000
    explored = json.loads((run / "rounds" / "round_000" / "exploration.json").read_text())
    assert explored["frames"] == len(explored["deviation"]) == 2 * 2 * 20
    # the structures selected in round 0 are the labelled explore rows of round 1
    selected = ase.io.read(run / "rounds" / "round_000" / "selected.xyz", ":")
    round1 = {row.hash for row in store.db.select(round=1)}
    assert {structure_hash(a) for a in selected} == round1
    # running the finished command again changes nothing
    assert learn(load_learn_config(run.parent / "learn.yaml"), progress=False) == last
    assert LabelStore(run / "labels.db").counts()["ok"] == 30


def test_a_raised_limit_extends_a_finished_run(finished, tmp_path):
    run, last = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = run.parent / "learn.yaml"
    model = copy / "rounds" / "round_002" / "train" / "model.safetensors"
    trained = model.stat().st_mtime_ns
    extended = learn(load_learn_config(config, [f"output={copy}", "stop.max_rounds=4"]),
                     progress=False)
    history = json.loads((copy / "history.json").read_text())
    assert [h["round"] for h in history] == [0, 1, 2, 3] and extended == history[-1]
    assert extended["stop"] == "4 rounds done" and extended["oracle_calls"] == 28
    # round 2 kept its committee and test error, and now explored and selected
    assert model.stat().st_mtime_ns == trained
    assert "stop" not in history[2] and history[2]["selected"] == 6
    assert history[2]["test_forces_rmse"] == last["test_forces_rmse"]
    assert LabelStore(copy / "labels.db").counts()["ok"] == 36  # 30 + 6, none repeated
    # a run that stopped on its own (here: nothing left to select) stays stopped
    history[-1].update(selected=0, stop="nothing to select")
    (copy / "history.json").write_text(json.dumps(history))
    again = learn(load_learn_config(config, [f"output={copy}", "stop.max_rounds=5"]),
                  progress=False)
    assert again["stop"] == "nothing to select" and again["round"] == 3


def test_status_and_export_read_a_run_without_running_it(finished, tmp_path, capsys):
    run, _ = finished
    config = str(run.parent / "learn.yaml")
    files = [run / name for name in ("history.json", "config.yaml", "labels.db",
                                     "model.safetensors")]
    before = [path.stat().st_mtime_ns for path in files]
    labels = tmp_path / "labels.xyz"
    assert main(["--quiet", "learn", config, "--status", "--export", str(labels)]) == 0
    out = capsys.readouterr().out
    assert "3 round(s) finished, stopped: 3 rounds done" in out
    assert "oracle calls for training data: 22;" in out
    assert "30 labelled, 0 failed, 0 queued" in out
    history = json.loads((run / "history.json").read_text())
    rows = [line.split() for line in out.splitlines() if line.split()[0] in ("0", "1", "2")]
    assert [int(row[1]) for row in rows] == [h["oracle_calls"] for h in history]
    for row, h in zip(rows, history):
        assert float(row[3]) == pytest.approx(1000 * h["test_forces_rmse"], abs=0.06)
    assert "wrote 22 labelled structures (seed, explore)" in out
    frames = ase.io.read(labels, ":")
    assert len(frames) == 22 and {f.info["origin"] for f in frames} == {"seed", "explore"}
    for frame in frames[::5]:  # EMT's own energies and forces of the exported positions
        reference = frame.copy()
        reference.calc = EMT()
        assert frame.get_potential_energy() == pytest.approx(
            reference.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(frame.get_forces(), reference.get_forces(), atol=1e-6)
    assert main(["--quiet", "learn", config, "--export", str(labels), "--origins", "test"]) == 0
    assert {f.info["origin"] for f in ase.io.read(labels, ":")} == {"test"}
    assert len(ase.io.read(labels, ":")) == 8
    assert [path.stat().st_mtime_ns for path in files] == before  # nothing ran
    assert main(["--quiet", "learn", config, "--origins", "test"]) == 2
    assert "give --export FILE too" in capsys.readouterr().err
    assert main(["--quiet", "learn", config, "output=" + str(tmp_path / "none"),
                 "--status"]) == 2
    assert "no run in" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_exploration_stops_trajectories_that_leave_the_trust_region(finished):
    run, _ = finished
    model = mlipkit.load(run / "rounds" / "round_000" / "train" / "model.safetensors")
    starts = ase.io.read(run.parent / "starts.xyz", ":")
    for atoms in starts:  # held atoms stay held, also after other replicas are stopped
        atoms.set_constraint(FixAtoms([0, 1]))
    held = [a.positions[:2] for a in starts]
    free = explore(model, starts, [1200.0], steps=60, timestep=2.0, friction=0.01,
                   sample_every=5, hi=10.0, seed=1)
    assert free.stopped == 0 and len(free.frames) == 2 * 12 and free.lost == 0
    hi = float(np.median(free.deviation))  # about half the frames lie above
    tight = explore(model, starts, [1200.0], steps=60, timestep=2.0, friction=0.01,
                    sample_every=5, hi=hi, seed=1)
    assert tight.stopped >= 1 and max(tight.deviation, default=0.0) <= hi
    assert len(tight.samples) + tight.lost == 2 * 12  # a stopped one's samples count as lost
    # each stopped trajectory leaves its last frame inside the region as a candidate
    assert len(tight.last_trusted) == tight.stopped
    assert all(tight.deviation[k] <= hi for k in tight.last_trusted)
    for frame in free.frames + tight.frames:
        assert any(np.allclose(frame.positions[:2], h, rtol=0, atol=1e-9) for h in held)
    # each frame knows its start (32 and 31 atoms), also after others were stopped
    for result in (free, tight):
        assert len(result.start) == len(result.frames)
        assert [len(f) for f in result.frames] == [len(starts[k]) for k in result.start]
    above = sum(tight.deviation[k] > hi * 0.999 for k in tight.samples)
    assert tight.uncertain_fraction(hi * 0.999) == (above + tight.lost) / 24
    # max and root mean square over the atoms of the committee's force spread, by the
    # definition, from a fresh prediction of the frames (last trusted ones included)
    pred = predict(model, [from_atoms(a) for a in tight.frames])
    norms = np.linalg.norm(pred["forces_std"], axis=1)
    split = np.cumsum(pred["n_atoms"])[:-1]
    per_frame = np.split(norms, split)
    np.testing.assert_allclose(tight.deviation, [n.max() for n in per_frame], rtol=1e-5)
    np.testing.assert_allclose(tight.spread, [np.sqrt(np.mean(n**2)) for n in per_frame],
                               rtol=1e-5)


def test_a_trajectory_that_leaves_at_its_first_step_leaves_no_candidate(finished):
    # its last trusted frame would be its start: a seed label (here a float32 copy of it)
    run, _ = finished
    model = mlipkit.load(run / "rounds" / "round_000" / "train" / "model.safetensors")
    starts = ase.io.read(run.parent / "starts.xyz", ":")
    pred = predict(model, [from_atoms(a) for a in starts])
    at_start = np.linalg.norm(pred["forces_std"], axis=1).max()
    hi = 2 * at_start + 1e-4  # every start is inside; a 40 fs step at 1200 K is not
    result = explore(model, starts, [1200.0], steps=5, timestep=40.0, friction=0.01,
                     sample_every=5, hi=hi, seed=1)
    assert result.stopped == result.trajectories == len(starts)
    assert result.frames == [] and result.last_trusted == []


def test_a_committee_that_distrusts_its_starts_labels_rattled_copies_of_them(tmp_path):
    # with hi this low every trajectory leaves the trust region at its first step: the
    # perfect cell (zero forces by symmetry) is its own last trusted frame, already a
    # seed label, and the vacancy cell is outside at once; nothing new is left to select
    config = load_learn_config(_config(tmp_path, test=None),
                               ["select.lo=0", "select.hi=1e-6", "stop.max_rounds=3"])
    last = learn(config, progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    for entry in history[:2]:
        assert entry["stopped"] == entry["trajectories"] == 4
        assert entry["selected"] == entry["reseeded"] == 6
    assert last["stop"] == "3 rounds done" and last["oracle_calls"] == last["labels"] == 22
    store = LabelStore(tmp_path / "run" / "labels.db")
    starts = {len(a): a for a in ase.io.read(tmp_path / "starts.xyz", ":")}
    hashes = {row.hash for row in store.db.select(round=0)}
    for r in (1, 2):  # each round new structures, displaced (and strained) from a start
        rows = list(store.db.select(round=r))
        assert len(rows) == 6 and {row.origin for row in rows} == {"seed"}
        assert sorted(row.natoms for row in rows) == [31, 31, 31, 32, 32, 32]
        for row in rows:
            assert row.hash not in hashes
            shift = np.sqrt(np.mean((row.positions - starts[row.natoms].positions) ** 2))
            assert 0.02 < shift < 0.3
        hashes |= {row.hash for row in rows}


_HOLD = """
import sys
from pathlib import Path
from mlipkit.active.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_loop_in_the_same_folder_is_refused(tmp_path, capsys):
    path = _config(tmp_path, test=None, stop={"max_rounds": 1})
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "run")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["--quiet", "learn", str(path)]) == 2
        assert f"another mlipkit learn (pid {holder.pid}) is running" in capsys.readouterr().err
        assert not (tmp_path / "run" / "labels.db").exists()  # nothing was touched
    finally:
        holder.kill()  # kill -9: the system drops its lock
        holder.wait()
    assert learn(load_learn_config(path), progress=False)["stop"] == "1 rounds done"
    assert main(["--quiet", "learn", str(path), "--status"]) == 0
    assert "1 round(s) finished, stopped: 1 rounds done" in capsys.readouterr().out
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "run")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["--quiet", "learn", str(path), "--status"]) == 0
        assert f"finished, running now (pid {holder.pid})" in capsys.readouterr().out
    finally:
        holder.kill()
        holder.wait()


def test_bad_configs_name_the_key(tmp_path):
    path = _config(tmp_path)
    with pytest.raises(InvalidConfig, match="select.per_rounds"):
        load_learn_config(path, ["select.per_rounds=3"])
    with pytest.raises(InvalidConfig, match="ensemble"):
        load_learn_config(path, ["training.ensemble=1"])
    with pytest.raises(InvalidConfig, match="select.lo"):
        load_learn_config(path, ["select.lo=0.9"])
    config = load_learn_config(path, ["oracle.kwargs.fixed_cutoff=true"])
    assert config.oracle.kwargs == {"fixed_cutoff": True}
    assert LearnConfig.from_dict(config.to_dict()) == config


def test_a_failing_oracle_stops_the_run_and_keeps_its_labels(tmp_path, capsys):
    starts, _ = _files(tmp_path)
    cells = ase.io.read(starts, ":")
    from mlipkit.active.loop import seed_structures

    seeds = seed_structures(cells, 4, 0.05, 0.02, 0)
    behaviour = {structure_hash(a): "raise" for a in seeds[:2]}  # 2 of 10: 20%
    oracle = {"calculator": "tests.active.faulty:Faulty",
              "kwargs": {"behaviour": behaviour, "marker_dir": str(tmp_path)}}
    path = _config(tmp_path, oracle=oracle, test=None)
    code = main(["--quiet", "learn", str(path), "executor.max_attempts=2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "2 of 10 structures of round 0 failed 2 times" in err
    assert "executor.max_failed_fraction" in err
    report = json.loads((tmp_path / "run" / "failures_round_0.json").read_text())
    assert len(report) == 2 and "crashed" in report[0]["error"]
    assert LabelStore(tmp_path / "run" / "labels.db").counts() == \
        {"queued": 0, "ok": 8, "failed": 2}
    with pytest.raises(OracleFailures):  # a new run retries them: they fail again
        learn(load_learn_config(path, ["executor.max_attempts=2"]), progress=False)
    failure = LabelStore(tmp_path / "run" / "labels.db").failures()[0]
    assert failure["attempts"] == 4 and failure["tries"] == 2
    # with the oracle fixed, the same command goes on from the stored labels
    fixed = load_learn_config(path, ["oracle.kwargs.behaviour={}", "stop.max_rounds=1"])
    assert learn(fixed, progress=False)["oracle_calls"] == 8 + 2 * 5  # every call counted


def test_failures_up_to_the_allowed_fraction_are_left_out_and_the_run_goes_on(tmp_path):
    cells = ase.io.read(_files(tmp_path)[0], ":")
    from mlipkit.active.loop import seed_structures

    seeds = seed_structures(cells, 4, 0.05, 0.02, 0)
    oracle = {"calculator": "tests.active.faulty:Faulty",
              "kwargs": {"behaviour": {structure_hash(seeds[3]): "raise"},  # 1 of 10
                         "marker_dir": str(tmp_path)}}
    config = load_learn_config(_config(tmp_path, oracle=oracle, test=None),
                               ["executor.max_attempts=1", "executor.max_failed_fraction=0.1",
                                "stop.max_rounds=1"])
    last = learn(config, progress=False)
    assert last["stop"] == "1 rounds done"
    assert last["oracle_calls"] == 10 and last["labels"] == 9  # the failed call is paid for
    assert len(ase.io.read(tmp_path / "run" / "rounds" / "round_000" / "train.xyz", ":")) == 9


_LEARN = """
import sys
from mlipkit.cli import main
sys.exit(main(["--quiet", "learn", sys.argv[1]]))
"""


def test_kill_9_resumes_without_repeating_finished_calls(tmp_path):
    oracle = {"calculator": "tests.active.faulty:Faulty",
              "kwargs": {"delay": 0.05, "marker_dir": str(tmp_path)}}
    path = _config(tmp_path, oracle=oracle, stop={"max_rounds": 2})
    command = [sys.executable, "-c", _LEARN, str(path)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    log = tmp_path / "calls.log"
    kills = 0
    # kill during seed labelling, then during round 1's labelling
    for wanted in (5, 21):
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and \
                (not log.exists() or len(log.read_text().split()) < wanted):
            time.sleep(0.02)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills == 2
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["round"] for h in history] == [0, 1]
    assert [h["oracle_calls"] for h in history] == [10, 16]
    calls = log.read_text().split()
    # 16 training + 8 test labels; at most the call in flight at each kill repeated
    assert len(set(calls)) == 24 and len(calls) - 24 <= kills
    assert LabelStore(tmp_path / "run" / "labels.db").counts()["ok"] == 24


def _select(result: Exploration, skip=frozenset(), **select) -> list[int]:
    """Learner.select on a stand-in learner, of which it reads only the
    selection settings: two picks, band 0.05–1 eV/Å, no diversity."""
    options = {"per_round": 2, "lo": 0.05, "hi": 1.0, "diversity": False, "rank_by": "max",
               "density": 0.0, "by_start": False, "by_temperature": False, **select}
    learner = SimpleNamespace(config=SimpleNamespace(select=SimpleNamespace(**options)))
    learner.round_size = lambda calls_left: Learner.round_size(learner, calls_left)
    return Learner.select(learner, result, None, np.random.default_rng(0), None, skip)


def test_random_selection_draws_on_last_trusted_frames_when_nothing_was_sampled():
    """Every trajectory stopped before its first sample: random selection
    still has the explored frames to draw from, as the trust band does."""
    frames = rattled(bulk("Cu", "fcc", a=3.61, cubic=True), 3, 0.05)
    result = Exploration(frames=frames, deviation=[0.4, 0.6, 0.5], temperature=[300.0] * 3,
                         last_trusted=[0, 1, 2], trajectories=3, stopped=3)
    assert len(result.samples) == 0
    for strategy in ("random", "trust_band"):
        picks = _select(result, strategy=strategy)
        assert len(picks) == 2 and set(picks) <= {0, 1, 2}


def test_skipped_last_trusted_frames_leave_their_places_to_the_band():
    """Two trajectories stopped at the same, labelled frame: selected again
    without it, the round takes the band's frames instead."""
    frames = rattled(bulk("Cu", "fcc", a=3.61, cubic=True), 4, 0.05)
    result = Exploration(frames=frames, deviation=[0.3, 0.3, 0.5, 0.02], spread=[0.1] * 4,
                         temperature=[300.0] * 4, last_trusted=[0, 1], trajectories=3,
                         stopped=2)
    assert _select(result, strategy="trust_band") == [0, 1]
    assert _select(result, strategy="trust_band", skip={0, 1}) == [2]  # 3 is below the band
    assert _select(result, strategy="random", skip={0, 1}) == [2, 3]  # all that is left


def test_the_band_is_on_the_max_deviation_and_ranked_by_the_chosen_measure():
    frames = rattled(bulk("Cu", "fcc", a=3.61, cubic=True), 4, 0.05)
    # frame 3 has the largest spread but a max deviation above the band
    result = Exploration(frames=frames, deviation=[0.4, 0.6, 0.5, 1.5],
                         spread=[0.05, 0.02, 0.04, 0.3], temperature=[300.0] * 4)
    picks = {rank_by: _select(result, strategy="trust_band", rank_by=rank_by)
             for rank_by in ("max", "rms")}
    assert picks == {"max": [1, 2], "rms": [0, 2]}


def test_density_puts_frames_typical_of_the_exploration_first(monkeypatch):
    frames = rattled(bulk("Cu", "fcc", a=3.61, cubic=True), 5, 0.05)
    # frame 0, the most uncertain, lies alone in descriptor space; 1-3 and frame 4
    # (below the band, but explored) lie together
    rows = {0: [5.0], 1: [0.0], 2: [0.1], 3: [0.2], 4: [0.05]}
    result = Exploration(frames=frames, deviation=[0.5, 0.45, 0.44, 0.43, 0.01],
                         spread=[0.1] * 5, temperature=[300.0] * 5)
    seen = []

    def features(model, batches):
        keys = [structure_hash(result.frames[k]) for k in range(5)]
        index = [keys.index(structure_hash(to_atoms(b)[0])) for b in batches]
        seen.append(index)
        return np.array([rows[k] for k in index])

    monkeypatch.setattr("mlipkit.active.loop._structure_features", features)
    assert _select(result, strategy="trust_band") == [0, 1]
    assert seen == []  # no descriptors without diversity or density
    # frame 2 sits in the middle of the group, which outweighs its lower deviation
    assert _select(result, strategy="trust_band", density=1.0) == [2, 1]
    assert seen == [[0, 1, 2, 3, 4]]  # the density is among all samples, the band's and not


def test_by_start_the_starts_take_turns_most_uncertain_first():
    frames = rattled(bulk("Cu", "fcc", a=3.61, cubic=True), 6, 0.05)
    # start 0 holds the three most uncertain frames; start 2's frame is below the band
    result = Exploration(frames=frames, deviation=[0.9, 0.8, 0.7, 0.3, 0.2, 0.01],
                         spread=[0.1] * 6, temperature=[300.0] * 6, start=[0, 0, 0, 1, 1, 2])
    assert _select(result, strategy="trust_band", per_round=3) == [0, 1, 2]
    assert _select(result, strategy="trust_band", per_round=3, by_start=True) == [0, 3, 1]
    assert _select(result, strategy="trust_band", per_round=5, by_start=True) == [0, 3, 1, 4, 2]
    result.deviation[3] = 0.95  # now start 1 goes first
    assert _select(result, strategy="trust_band", per_round=3, by_start=True) == [3, 0, 4]


def test_by_temperature_the_temperatures_take_turns_and_with_by_start_the_trajectories():
    frames = rattled(bulk("Cu", "fcc", a=3.61, cubic=True), 6, 0.05)
    result = Exploration(frames=frames, deviation=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                         spread=[0.1] * 6, temperature=[300.0, 300.0, 600.0, 300.0, 600.0, 600.0],
                         start=[0, 1, 0, 1, 0, 1])
    assert _select(result, strategy="trust_band", per_round=4, by_temperature=True) == [0, 2, 1, 4]
    # trajectories (0, 300 K): 0; (1, 300 K): 1, 3; (0, 600 K): 2, 4; (1, 600 K): 5
    assert _select(result, strategy="trust_band", per_round=5, by_start=True,
                   by_temperature=True) == [0, 1, 2, 5, 3]
