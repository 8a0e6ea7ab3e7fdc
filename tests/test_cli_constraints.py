"""The command line under operator constraints: certify (feasible/infeasible), solve's table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import cvxalloc
from cvxalloc import Constraints
from cvxalloc.cli import main
from cvxalloc.constraints import effective_lower
from cvxalloc.report import result_table, solve_report

SLO, BUDGET, FLOOR = 30.0, 1500.0, 0.82


def _constrained(example, **kw):
    """The example with the SLO, token budget and math floor of docs/constraints.md."""
    floors = np.full(example.n, np.nan)
    floors[example.names.index("math")] = FLOOR
    args = {"max_mean_system_time": SLO, "max_mean_tokens": BUDGET, "min_accuracy": floors}
    args.update(kw)
    return example.with_(constraints=Constraints(**args))


def _write_scenario(tmp_path, sc, name="scenario.json"):
    path = tmp_path / name
    path.write_text(json.dumps(sc.to_dict()))
    return str(path)


def _write_allocation(tmp_path, sc, tokens, name="alloc.json"):
    path = tmp_path / name
    # repr of a float round-trips exactly through JSON
    path.write_text(json.dumps(dict(zip(sc.names, map(float, tokens)))))
    return str(path)


def _run(capsys, argv):
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return cap.out


@pytest.fixture(scope="module")
def constrained_optimum(example):
    return cvxalloc.solve(_constrained(example), method="conic")


# ---------------------------------------------------------------------------
# certify: infeasible allocations


def test_certify_infeasible_names_every_violation_json(capsys, tmp_path, example):
    sc = _constrained(example)
    t = np.full(sc.n, 1970.0)
    out = json.loads(
        _run(
            capsys,
            [
                "certify",
                _write_scenario(tmp_path, sc),
                _write_allocation(tmp_path, sc, t),
                "--json",
            ],
        )
    )
    assert out["feasible"] is False
    viol = {v["constraint"]: v for v in out["violations"]}
    assert set(viol) == {"max_mean_system_time", "max_mean_tokens", "min_accuracy[math]"}
    # amounts, recomputed independently of the CLI
    ev = cvxalloc.evaluate(sc, t)
    assert viol["max_mean_system_time"]["amount"] == pytest.approx(
        ev.mean_system_time - SLO, rel=1e-12
    )
    assert viol["max_mean_system_time"]["value"] == pytest.approx(ev.mean_system_time, rel=1e-12)
    assert viol["max_mean_system_time"]["unit"] == "s"
    assert viol["max_mean_tokens"]["amount"] == pytest.approx(
        float(sc.probability @ t) - BUDGET, rel=1e-12
    )
    acc_math = float(sc.accuracy.value(t)[sc.names.index("math")])
    assert acc_math < FLOOR
    assert viol["min_accuracy[math]"]["amount"] == pytest.approx(FLOOR - acc_math, rel=1e-9)
    for v in viol.values():
        assert v["amount"] > 0
        assert v["constraint"] in v["message"]
    # no bound is claimed for an infeasible point
    assert out["shortfall"] is None
    assert out["certificate"]["gap"] is None and out["certificate"]["upper_bound"] is None
    assert out["constraints"]["max_mean_tokens"]["slack"] < 0


def test_certify_infeasible_text_is_plain(capsys, tmp_path, example, example_optimum):
    sc = _constrained(example, max_mean_tokens=None, min_accuracy=None)
    # The unconstrained optimum breaks the SLO (W ~ 50 s) and has a *higher* utility than the
    # constrained optimum: the old output printed a negative "shortfall" here.
    t = example_optimum.tokens
    ref = cvxalloc.solve(sc, method="conic")
    assert cvxalloc.evaluate(sc, t).objective > ref.objective
    argv = ["certify", _write_scenario(tmp_path, sc), _write_allocation(tmp_path, sc, t)]
    text = _run(capsys, argv)
    assert "INFEASIBLE" in text
    assert "max_mean_system_time" in text
    W = cvxalloc.evaluate(sc, t).mean_system_time
    assert f"by {W - SLO:.3g} s" in text
    assert "inf" not in text.replace("infeasible", "").replace("INFEASIBLE", "")
    assert "Frank-Wolfe gap" not in text
    tail = text.split("shortfall U* - U", 1)[1]
    assert "in [" not in tail and "-" not in tail and "%" not in tail
    assert "not defined" in tail
    # the --json form agrees and exits 0 too
    out = json.loads(_run(capsys, argv + ["--json"]))
    assert [v["constraint"] for v in out["violations"]] == ["max_mean_system_time"]
    assert out["feasible"] is False


def test_certify_single_floor_violation(capsys, tmp_path, example, constrained_optimum):
    sc = _constrained(example)
    t = constrained_optimum.tokens.copy()
    i = sc.names.index("math")
    t[i] *= 0.9  # fewer tokens: W and the mean budget only improve, the floor breaks
    out = json.loads(
        _run(
            capsys,
            [
                "certify",
                _write_scenario(tmp_path, sc),
                _write_allocation(tmp_path, sc, t),
                "--json",
            ],
        )
    )
    assert out["feasible"] is False
    assert [v["constraint"] for v in out["violations"]] == ["min_accuracy[math]"]
    assert out["violations"][0]["amount"] == pytest.approx(
        FLOOR - float(sc.accuracy.value(t)[i]), rel=1e-9
    )


def test_certify_infeasible_output_file(capsys, tmp_path, example):
    sc = _constrained(example)
    dest = tmp_path / "out.txt"
    code = main(
        [
            "certify",
            _write_scenario(tmp_path, sc),
            _write_allocation(tmp_path, sc, np.full(sc.n, 1970.0)),
            "-o",
            str(dest),
        ]
    )
    assert code == 0
    assert "INFEASIBLE" in dest.read_text()


# ---------------------------------------------------------------------------
# certify: feasible allocations under constraints


def test_certify_feasible_names_certificate_kind(capsys, tmp_path, example):
    sc = _constrained(example)
    scen = _write_scenario(tmp_path, sc)
    res = tmp_path / "res.json"
    _run(capsys, ["solve", scen, "--json", "--no-baselines", "-o", str(res)])
    out = json.loads(_run(capsys, ["certify", scen, str(res), "--json"]))
    assert out["feasible"] is True and out["violations"] == []
    assert out["certificate"]["kind"] == "lagrangian-frank-wolfe"
    low, high = out["shortfall"]
    assert 0 <= low <= high <= 1e-8 * abs(out["objective"])
    assert all(e["slack"] >= 0 for e in out["constraints"].values())
    text = _run(capsys, ["certify", scen, str(res)])
    assert "lagrangian-frank-wolfe certificate" in text
    assert "all 3 satisfied" in text and "VIOLATED" not in text


def test_certify_feasible_interval_holds_true_shortfall(
    capsys, tmp_path, example, constrained_optimum
):
    # Only the linear budget: the polytope certificate. lo' is feasible, far from optimal.
    sc = _constrained(example, max_mean_system_time=None)
    ref = cvxalloc.solve(sc, method="conic")
    t = effective_lower(sc)
    out = json.loads(
        _run(
            capsys,
            [
                "certify",
                _write_scenario(tmp_path, sc),
                _write_allocation(tmp_path, sc, t),
                "--json",
            ],
        )
    )
    assert out["feasible"] is True
    assert out["certificate"]["kind"] == "frank-wolfe-polytope"
    true = ref.objective - cvxalloc.evaluate(sc, t).objective
    low, high = out["shortfall"]
    assert 0 < low <= true + 1e-12 <= high + 2e-12
    # the allocation's own certificate is a valid (looser) bound
    assert out["certificate"]["upper_bound"] >= ref.objective - 1e-12
    assert out["certificate"]["details"]["multipliers"]["max_mean_tokens"] >= 0


def test_certify_unconstrained_reports_feasible(capsys, tmp_path, example):
    out = json.loads(
        _run(
            capsys,
            [
                "certify",
                _write_scenario(tmp_path, example),
                _write_allocation(tmp_path, example, example.min_tokens),
                "--json",
            ],
        )
    )
    assert out["feasible"] is True and out["violations"] == []
    assert "constraints" not in out
    assert out["certificate"]["kind"] == "frank-wolfe"


# ---------------------------------------------------------------------------
# solve: the constraint table


def _rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("constraint "))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith("("):
            break
        parts = line.split()
        rows[parts[0]] = parts[1:]
    return rows


def test_solve_report_lists_constraints(constrained_optimum):
    r = constrained_optimum
    diag = r.diagnostics["constraints"]
    rows = _rows(solve_report(r))
    assert set(rows) == set(diag)
    for name, e in diag.items():
        unit, limit, value, slack, price, *active = rows[name]
        assert unit == e["unit"]
        assert float(limit) == pytest.approx(e["limit"], rel=1e-5)
        assert float(value) == pytest.approx(e["value"], rel=1e-5, abs=1e-12)
        assert float(slack) == pytest.approx(e["slack"], rel=1e-5, abs=1e-12)
        assert float(price) == pytest.approx(e["shadow_price"], rel=1e-5, abs=1e-300)
        assert (active == ["active"]) == e["active"]
    # the SLO binds and is priced; the token budget has slack
    assert rows["max_mean_system_time"][-1] == "active"
    assert float(rows["max_mean_tokens"][3]) > 0


def test_solve_cli_prints_constraint_block(capsys, tmp_path, example):
    sc = _constrained(example)
    text = _run(capsys, ["solve", _write_scenario(tmp_path, sc), "--no-baselines"])
    out = json.loads(
        _run(capsys, ["solve", _write_scenario(tmp_path, sc), "--no-baselines", "--json"])
    )
    rows = _rows(text)
    assert set(rows) == set(out["diagnostics"]["constraints"])
    assert "shadow price" in text


def test_solve_report_unconstrained_unchanged(example_optimum):
    r = example_optimum
    head = f"cvxalloc: method {r.method}, status {r.status}"
    if r.solver_stats.get("solver"):
        head += f" ({r.solver_stats['solver']})"
    assert solve_report(r) == "\n".join([head, "", result_table(r)])
    assert "shadow price" not in solve_report(r)


def test_solve_report_missing_shadow_price_is_dash(constrained_optimum):
    r = constrained_optimum
    diag = {k: dict(v) for k, v in r.diagnostics["constraints"].items()}
    diag["max_mean_tokens"]["shadow_price"] = None
    r2 = type(r)(**{**r.__dict__, "diagnostics": {"constraints": diag}})
    assert _rows(solve_report(r2))["max_mean_tokens"][4] == "-"
    assert not math.isnan(float(_rows(solve_report(r2))["max_mean_system_time"][4]))
