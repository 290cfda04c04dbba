"""The run report's uncertainty figure stays readable for many rounds."""

from __future__ import annotations

import json
import warnings

import numpy as np

from mlipkit.active.report import uncertainty_histograms
from tests.conftest import assert_png


def _rounds(run, n_rounds, rng):
    for r in range(n_rounds):
        folder = run / "rounds" / f"round_{r:03d}"
        folder.mkdir(parents=True)
        # deviations falling over two decades as the rounds go on, and one exact zero
        deviation = rng.lognormal(np.log(0.3 * 0.85**r), 0.8, 200).tolist() + [0.0]
        (folder / "exploration.json").write_text(json.dumps({"deviation": deviation}))


def test_forty_rounds_lay_out_without_warnings(tmp_path):
    _rounds(tmp_path, 40, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Tight layout not applied" with a 40-entry legend
        path = uncertainty_histograms(tmp_path, 0.01, 1.0, tmp_path / "report" / "u.png")
    assert_png(path, min_bytes=10_000)


def test_no_explored_frames_draw_nothing(tmp_path):
    assert uncertainty_histograms(tmp_path, 0.01, 1.0, tmp_path / "u.png") is None
    (tmp_path / "rounds" / "round_000").mkdir(parents=True)
    (tmp_path / "rounds" / "round_000" / "exploration.json").write_text('{"deviation": []}')
    assert uncertainty_histograms(tmp_path, 0.01, 1.0, tmp_path / "u.png") is None
    assert not (tmp_path / "u.png").exists()
