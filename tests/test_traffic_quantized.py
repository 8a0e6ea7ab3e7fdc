"""Time stamps on a coarse grid (issue 22): detected, reported, and de-quantized on request.

A Poisson log of 3 arrivals a second written to the 3 s below has about 89% of
its gaps exactly 0; its gap SCV (about 8) measures the grid, not the traffic
(1). Given the counts per step, the arrival times of a Poisson process in a step
are independent and uniform on it, so spreading each arrival uniformly over its
step recovers the SCV, which the test holds to 5%.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.traffic import measure_traffic, quantization


def _poisson(rate: float, n: int, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


def _write_log(path, times, fmt="{:.1f}") -> str:
    path.write_text("timestamp\n" + "".join(fmt.format(x) + "\n" for x in times))
    return str(path)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_three_second_grid_is_detected_and_de_quantized(seed):
    t = 3.0 * np.floor(_poisson(3.0, 30_000, seed) / 3.0)
    tr = measure_traffic(t)
    q = tr.quantization
    assert q is not None and q.step_seconds == 3.0 and q.distorts
    assert 0.85 < q.zero_gap_share < 0.92
    assert tr.arrival_scv > 6  # the grid, not the traffic
    assert abs(q.arrival_scv_dequantized - 1.0) < 0.05
    assert "measures the grid, not the traffic" in tr.warning
    assert "% of the gaps are 0" in tr.warning


def test_continuous_and_fine_stamps_are_not_flagged():
    t = _poisson(3.0, 5_000, 4)
    assert quantization(t) is None  # no common step
    assert measure_traffic(t).warning is None
    ms = np.round(_poisson(1.0, 5_000, 5), 3)  # millisecond stamps, a gap of about 1 s
    q = quantization(ms)
    assert q is not None and q.step_seconds == pytest.approx(0.001)
    assert not q.distorts and measure_traffic(ms).warning is None
    assert quantization(np.array([0.0, 1.0, 1.0, 3.0])) is None  # too few gaps to tell


def test_cli_reports_the_grid_and_writes_the_burstiness_alone(tmp_path, capsys):
    log = _write_log(tmp_path / "q.csv", 3.0 * np.floor(_poisson(3.0, 30_000, 7) / 3.0))
    assert main(["traffic", log]) == 0
    text = capsys.readouterr().out
    assert "time grid         3 s" in text and "warning: time stamps are on a 3 s grid" in text
    # --keep-rate: only the burstiness goes into the scenario; --dequantize: the estimate
    out = tmp_path / "out.toml"
    example = cvxalloc.example_scenario()
    src = tmp_path / "in.toml"
    src.write_text(cvxalloc.io.scenario_toml(example))
    argv = ["traffic", log, "--scenario", str(src), "--output", str(out), "--json"]
    assert main([*argv, "--keep-rate", "--dequantize"]) == 0
    report = json.loads(capsys.readouterr().out)
    q = report["quantization"]
    sc = cvxalloc.load_scenario(out)
    assert sc.arrival_rate == example.arrival_rate
    assert sc.arrival_scv == q["arrival_scv_dequantized"] == report["arrival_scv_used"]
    assert "de-quantized" in out.read_text().splitlines()[1]
    assert main(argv) == 0  # without the flags: the log's rate and raw gap SCV, with a warning
    capsys.readouterr()
    sc = cvxalloc.load_scenario(out)
    assert sc.arrival_scv == pytest.approx(report["arrival_scv"])
    assert sc.arrival_rate == pytest.approx(report["arrival_rate"])
    assert "warning: time stamps are on a 3 s grid" in out.read_text()


def test_keep_rate_needs_a_scenario(tmp_path, capsys):
    log = _write_log(tmp_path / "p.csv", _poisson(1.0, 100, 8), "{:.6f}")
    assert main(["traffic", log, "--keep-rate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--keep-rate applies to the scenario written" in err[0]
