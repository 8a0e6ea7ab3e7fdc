"""Calibration: recovery of known parameters, family choice, scenario output, bad CSVs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

import cvxalloc
from cvxalloc.cli import main
from cvxalloc.fit import (
    POOLED,
    AccuracyData,
    MeasurementError,
    build_scenario,
    calibrate,
    fit_family,
    fit_service,
    fit_task,
    read_accuracy_csv,
    scenario_toml,
)
from cvxalloc.io import load_scenario

ROOT = Path(__file__).resolve().parents[1]
ACC_CSV = ROOT / "docs" / "examples" / "accuracy_measurements.csv"
SERVICE_CSV = ROOT / "docs" / "examples" / "service_times.csv"

TRUE = {
    "exponential": {"floor": 0.3, "ceiling": 0.85, "scale": 1200.0},
    "power": {"floor": 0.2, "ceiling": 0.85, "scale": 500.0, "exponent": 0.7},
    "logarithmic": {"floor": 0.3, "gain": 0.05, "scale": 300.0},
}
BUDGETS = np.geomspace(64, 32768, 12)


def curve(family: str, params: dict[str, float], t: np.ndarray) -> np.ndarray:
    cls = cvxalloc.accuracy.FAMILIES[family]
    return cls(**{cls.params[k]: v for k, v in params.items()}).value(t)


def binomial_data(rng, family, trials=2000):
    n = np.full(len(BUDGETS), float(trials))
    y = rng.binomial(n.astype(int), curve(family, TRUE[family], BUDGETS)) / n
    return y, n


# --- recovery ---------------------------------------------------------------
@pytest.mark.parametrize("family", list(TRUE))
def test_noise_free_data_recovered_exactly(family):
    y = curve(family, TRUE[family], BUDGETS)
    fit = fit_family(BUDGETS, y, family, loo=False)
    for key, val in TRUE[family].items():
        assert fit.params[key] == pytest.approx(val, rel=1e-5), key
    assert fit.rss < 1e-14


@pytest.mark.parametrize("family", list(TRUE))
def test_binomial_data_recovered_within_three_standard_errors(family, rng):
    for _ in range(5):
        y, n = binomial_data(rng, family)
        fit = fit_family(BUDGETS, y, family, trials=n, loo=False)
        assert fit.weighted and fit.n_params == len(TRUE[family])
        for key, val in TRUE[family].items():
            se = fit.stderr[key]
            assert np.isfinite(se) and se > 0, key
            assert abs(fit.params[key] - val) <= 3 * se, (key, fit.params[key], val, se)


@pytest.mark.parametrize("family", ["exponential", "logarithmic"])
def test_standard_errors_have_nominal_coverage(family, rng):
    """Over 30 data sets, about 68% of estimates lie within 1 SE and 95% within 2 SE:
    the standard errors are neither too small nor too large."""
    z = []
    for _ in range(30):
        y, n = binomial_data(rng, family)
        fit = fit_family(BUDGETS, y, family, trials=n, loo=False)
        z += [(fit.params[k] - v) / fit.stderr[k] for k, v in TRUE[family].items()]
    z = np.abs(np.array(z))
    assert 0.5 <= np.mean(z <= 1) <= 0.85
    assert np.mean(z <= 2) >= 0.88


def test_unweighted_fit_uses_residual_variance(rng):
    true = TRUE["exponential"]
    for _ in range(5):
        y = curve("exponential", true, BUDGETS) + rng.normal(0, 0.01, len(BUDGETS))
        fit = fit_family(BUDGETS, y, "exponential", loo=False)
        assert not fit.weighted and fit.chi2 is None
        for key, val in true.items():
            assert abs(fit.params[key] - val) <= 3 * fit.stderr[key], key


def test_fixed_parameter_is_held():
    y = curve("power", TRUE["power"], BUDGETS)
    fit = fit_family(BUDGETS, y, "power", fixed={"exponent": 0.7}, loo=False)
    assert fit.params["exponent"] == 0.7 and fit.stderr["exponent"] == 0.0
    assert fit.n_params == 3 and fit.fixed == ("exponent",)
    assert fit.params["scale"] == pytest.approx(500.0, rel=1e-6)


def test_fit_respects_the_valid_region(rng):
    """Data that rise to 1: ceiling stays <= 1, floor < ceiling, and the bound is reported."""
    t = np.array([100, 400, 1600, 6400, 25600.0])
    y = np.array([0.55, 0.8, 0.97, 1.0, 1.0])
    fit = fit_family(t, y, "exponential", loo=False)
    assert 0 <= fit.params["floor"] < fit.params["ceiling"] <= 1
    cvxalloc.accuracy.Exponential.check("fit", fit.params)
    if fit.params["ceiling"] > 1 - 1e-6:
        assert "ceiling" in fit.at_bound


def test_family_choice_by_aic(rng):
    """Saturating data reject the logarithmic family and log growth rejects the
    exponential one by a wide AIC margin. (The power family nests both in the limit,
    eta -> inf and eta -> 0 with ceiling 1, so it may win either way.)"""
    n = np.full(len(BUDGETS), 5000.0)
    for family, wrong, good in (
        ("exponential", "logarithmic", {"exponential", "power"}),
        ("logarithmic", "exponential", {"logarithmic", "power"}),
    ):
        y = rng.binomial(n.astype(int), curve(family, TRUE[family], BUDGETS)) / n
        tf = fit_task(AccuracyData(BUDGETS, y, n), task="t")
        assert set(tf.fits) == {"exponential", "power", "logarithmic"}
        aic = {k: f.aic for k, f in tf.fits.items()}
        assert aic[wrong] > aic[family] + 10, (family, aic)
        assert tf.chosen in good and tf.best.aic == min(aic.values()), (family, aic)
        assert all(np.isfinite(f.loo_rmse) for f in tf.fits.values())
        assert tf.fits[family].loo_rmse < tf.fits[wrong].loo_rmse


def test_service_line_recovered(rng):
    a, b, k = 1.5, 0.0122, 0.3
    for _ in range(5):
        t = rng.uniform(0, 8000, 200)
        mean = a + b * t
        s = rng.gamma(1 / k, k * mean)
        sf = fit_service(t, s)
        assert abs(sf.base - a) <= 3 * sf.base_se
        assert abs(sf.per_token - b) <= 3 * sf.per_token_se
        assert abs(sf.scv - k) <= 3 * sf.scv_se


def test_deterministic_service_has_zero_scv():
    t = np.array([0, 1000, 2000, 4000.0])
    sf = fit_service(t, 0.5 + 0.01 * t)
    assert sf.base == pytest.approx(0.5, abs=1e-9)
    assert sf.per_token == pytest.approx(0.01, rel=1e-9)
    assert sf.scv == pytest.approx(0.0, abs=1e-15)


# --- scenario output -----------------------------------------------------------
def test_scenario_toml_round_trips(tmp_path, example):
    path = tmp_path / "s.toml"
    path.write_text(scenario_toml(example, ["a header"]), encoding="utf-8")
    back = load_scenario(path)
    assert back.to_dict() == example.to_dict()


def test_published_example_with_template_loads_and_solves(tmp_path, example, capsys):
    out = tmp_path / "fitted.toml"
    code = main(
        [
            "fit",
            str(ACC_CSV),
            "--service",
            str(SERVICE_CSV),
            "--template",
            str(ROOT / "cvxalloc" / "data" / "example.toml"),
            "--json",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    sc = load_scenario(out)
    assert sc.names == example.names
    assert np.allclose(sc.probability, example.probability)
    for i, name in enumerate(sc.names):  # the file holds the chosen fit and service line
        task = report["tasks"][name]
        fit = task["fits"][task["chosen"]]
        assert sc.accuracy.param_dict(i) == pytest.approx({"model": fit["family"], **fit["params"]})
        assert sc.per_token[i] == pytest.approx(report["service"][name]["per_token"])
        assert sc.scv[i] == pytest.approx(report["service"][name]["scv"])
    res = cvxalloc.solve(sc, method="conic")
    assert res.status == "optimal"
    assert res.certificate.gap <= 1e-8 * abs(res.objective)


def test_fit_without_template_uses_flags(tmp_path, capsys):
    out = tmp_path / "fitted.toml"
    code = main(
        [
            "fit",
            str(ACC_CSV),
            "--service",
            str(SERVICE_CSV),
            "--arrival-rate",
            "0.01",
            "--latency-weight",
            "0.001",
            "--probability",
            "chat=0.4",
            "--probability",
            "code=0.2",
            "--probability",
            "math=0.2",
            "--probability",
            "olympiad=0.05",
            "--probability",
            "science=0.15",
            "--weight",
            "olympiad=3",
            "--family",
            "exponential",
            "--json",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {t["chosen"] for t in report["tasks"].values()} == {"exponential"}
    sc = load_scenario(out)
    assert sc.arrival_rate == 0.01 and sc.latency_weight == 0.001
    assert sc.weight[sc.names.index("olympiad")] == 3
    # default max_tokens: the largest measured budget (no extrapolation)
    assert sc.max_tokens[sc.names.index("code")] == 5120
    assert cvxalloc.solve(sc).status == "optimal"


SMALL = (
    "task,tokens,accuracy,trials\n"
    + "".join(
        f"a,{t},{0.8 - 0.5 * np.exp(-t / 900):.4f},500\n" for t in (100, 300, 900, 2700, 8100)
    )
    + "".join(
        f"b,{t},{0.2 + 0.05 * np.log1p(t / 200):.4f},500\n" for t in (100, 300, 900, 2700, 8100)
    )
)


def test_report_only_without_output(tmp_path, capsys):
    assert main(["fit", str(write(tmp_path, SMALL))]) == 0
    text = capsys.readouterr().out
    assert 'task "a"' in text and 'task "b"' in text and "chosen:" in text and "+-" in text


def test_unbounded_curve_past_one_is_replaced(example):
    notes: list[str] = []
    t = np.array([1000, 2000, 4000, 8000.0])
    y = 0.1 + 0.25 * np.log1p(t / 500)  # logarithmic, 0.81 at 8000, 1.15 at 32768
    n = np.full(4, 400.0)
    tf = fit_task(AccuracyData(t, np.clip(y, 0, 1), n), ["logarithmic", "exponential"], task="x")
    assert tf.chosen == "logarithmic"
    sc = build_scenario(
        {"x": tf},
        arrival_rate=0.001,
        latency_weight=0.0,
        per_token=0.01,
        max_tokens=32768,
        notes=notes,
    )
    assert tf.chosen == "exponential" and any("exceeds accuracy 1" in s for s in notes)
    assert sc.accuracy.value(sc.max_tokens)[0] <= 1


# --- bad input ----------------------------------------------------------------
def write(tmp_path, text, name="m.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


BAD = {
    "missing column": ("task,tokens\na,1\n", ["'accuracy'"]),
    "non-numeric": (
        "task,tokens,accuracy\na,100,0.5\na,2x0,0.6\na,300,0.7\n",
        ["line 3", "'tokens'", "2x0"],
    ),
    "accuracy > 1": (
        "task,tokens,accuracy\na,100,0.5\na,200,62\n",
        ["line 3", "'accuracy'", "[0, 1]", "percent"],
    ),
    "negative accuracy": ("task,tokens,accuracy\na,100,-0.1\n", ["line 2", "'accuracy'"]),
    "negative tokens": ("task,tokens,accuracy\na,-5,0.1\n", ["line 2", "'tokens'"]),
    "empty task": ("task,tokens,accuracy\n,5,0.1\n", ["line 2", "'task'"]),
    "bad trials": ("task,tokens,accuracy,trials\na,5,0.1,2.5\n", ["line 2", "'trials'"]),
    "partial trials": (
        "task,tokens,accuracy,trials\na,5,0.1,10\na,50,0.2,\na,500,0.3,10\n",
        ["line 3", "'trials'"],
    ),
    "too few points": (
        "task,tokens,accuracy\na,100,0.5\na,200,0.6\n",
        ['task "a"', "2 measurement(s)", "3 free parameters"],
    ),
    "ragged row": ("task,tokens,accuracy\na,100\n", ["line 2", "fields"]),
    "no rows": ("task,tokens,accuracy\n", ["no data rows"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_accuracy_csv_exits_2_without_output(case, tmp_path, capsys):
    text, needles = BAD[case]
    csv_path = write(tmp_path, text)
    out = tmp_path / "out.toml"
    code = main(
        [
            "fit",
            str(csv_path),
            "--arrival-rate",
            "0.01",
            "--latency-weight",
            "0",
            "--per-token",
            "0.01",
            "-o",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert not out.exists()
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_explicit_family_needs_enough_points(tmp_path, capsys):
    csv_path = write(tmp_path, "task,tokens,accuracy\na,100,0.5\na,200,0.6\na,400,0.65\n")
    assert main(["fit", str(csv_path), "--family", "power"]) == 2
    err = capsys.readouterr().err
    assert "4 free parameters of the power family" in err
    # auto: power is skipped (and said so), the 3-parameter families fit
    assert main(["fit", str(csv_path)]) == 0
    assert "power" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["fit", "/nonexistent/m.csv"], "does not exist"),
        (["fit", str(ACC_CSV), "--service", "/nonexistent/s.csv"], "does not exist"),
        (["fit", str(ACC_CSV), "-o", "OUT"], "arrival_rate is required"),
        (
            ["fit", str(ACC_CSV), "--arrival-rate", "0.01", "--latency-weight", "0", "-o", "OUT"],
            "no service time",
        ),
        (
            [
                "fit",
                str(ACC_CSV),
                "--service",
                str(SERVICE_CSV),
                "--arrival-rate",
                "0.01",
                "--latency-weight",
                "0",
                "--probability",
                "chat=1",
                "-o",
                "OUT",
            ],
            'probability missing for task "code"',
        ),
        (["fit", str(ACC_CSV), "--family", "cubic"], "unknown family 'cubic'"),
        (["fit", str(ACC_CSV), "--fix", "slope=2"], "no family has a parameter 'slope'"),
    ],
)
def test_cli_errors(argv, needle, tmp_path, capsys):
    out = tmp_path / "out.toml"
    argv = [str(out) if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_bad_service_csv(tmp_path, capsys):
    svc = write(tmp_path, "tokens,seconds\n100,1.0\n200,abc\n", name="s.csv")
    assert main(["fit", str(ACC_CSV), "--service", str(svc)]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "'seconds'" in err
    svc = write(tmp_path, "tokens,seconds\n100,1.0\n200,2.0\n", name="s2.csv")
    with pytest.raises(MeasurementError, match="need >= 3"):
        calibrate(write(tmp_path, SMALL), svc, build=False)


def test_pooled_service_line_applies_to_every_task(tmp_path):
    svc = write(tmp_path, "tokens,seconds\n0,1.0\n1000,11.0\n2000,21.0\n4000,41.0\n", name="s.csv")
    cal = calibrate(write(tmp_path, SMALL), svc, arrival_rate=0.001, latency_weight=0.0)
    assert set(cal.service) == {POOLED}
    assert np.allclose(cal.scenario.per_token, 0.01) and np.allclose(cal.scenario.base, 1.0)


def test_read_accuracy_csv_groups_tasks_in_order():
    data = read_accuracy_csv(ACC_CSV)
    assert list(data) == ["chat", "code", "math", "olympiad", "science"]
    assert data["code"].trials is None and data["math"].trials is not None
    assert data["olympiad"].tokens.tolist() == [1381, 1841, 2799, 3742, 11768]


def test_published_code_rows_reproduce_the_example_curve(tmp_path, example, capsys):
    """The built-in example's code curve was fitted to the same LiveCodeBench rows with the
    power exponent held at 0.5 (cvxalloc/data/example.toml); the fit gives it back."""
    rows = [
        line for line in ACC_CSV.read_text().splitlines() if line.startswith(("task,", "code,"))
    ]
    csv_path = write(tmp_path, "\n".join(rows) + "\n")
    assert (
        main(["fit", str(csv_path), "--family", "power", "--fix", "code:exponent=0.5", "--json"])
        == 0
    )
    fit = json.loads(capsys.readouterr().out)["tasks"]["code"]["fits"]["power"]
    want = example.accuracy.param_dict(example.names.index("code"))
    for key in ("floor", "ceiling", "scale"):
        assert fit["params"][key] == pytest.approx(want[key], rel=2e-3), key
    assert fit["params"]["exponent"] == 0.5 and fit["n_params"] == 3


# ----------------------------------------------------------------------------
# reprs that rebuild the results
# ----------------------------------------------------------------------------
#: What a repr of a fit result needs in scope: numpy, the classes of cvxalloc.fit, Scenario.
NAMESPACE = {
    "np": np,
    "Scenario": cvxalloc.Scenario,
    **{name: getattr(cvxalloc.fit, name) for name in cvxalloc.fit.__all__},
}


def rebuilt(x, namespace=NAMESPACE):
    """``eval(repr(x))``: source (no ``object at 0x``, no bare ``array(``) that prints the same."""
    text = repr(x)
    assert "object at 0x" not in text and "array(" not in text.replace("np.array(", "")
    again = eval(text, dict(namespace))  # noqa: S307 - our own repr
    assert type(again) is type(x)
    assert repr(again) == text
    return again


def assert_same(a, b):
    """Equal field by field: arrays with their dtype, NaN equal to NaN, scenarios by to_dict()."""
    if isinstance(a, cvxalloc.Scenario):
        assert isinstance(b, cvxalloc.Scenario) and a.to_dict() == b.to_dict()
    elif dataclasses.is_dataclass(a):
        assert type(b) is type(a)
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        assert a == b and type(a) is type(b)


def test_calibration_repr_rebuilds_it(example):
    """The whole calibration (fits with NaN scores, bounds, fixed parameters, weighted and
    unweighted data, service lines, the scenario) comes back from its repr."""
    cal = calibrate(
        ACC_CSV,
        SERVICE_CSV,
        fixed={"code": {"power": {"exponent": 0.5}}},
        template=example,
        progress=False,
    )
    fits = [f for tf in cal.tasks.values() for f in tf.fits.values()]
    assert any(math.isnan(f.loo_rmse) for f in fits) or any(f.at_bound for f in fits)
    assert any(f.fixed for f in fits) and any(f.chi2 is None for f in fits)
    assert cal.scenario is not None and cal.notes
    again = rebuilt(cal)
    assert_same(cal, again)
    assert again.summary() == cal.summary()
    assert again.to_dict() == cal.to_dict()


def test_fit_result_reprs_rebuild_them(rng):
    """Each result class on its own, including a report-only calibration (no scenario)."""
    t = np.array([0, 500, 1000, 2000, 4000, 8000.0])
    data = AccuracyData(t, 0.8 - 0.5 * np.exp(-t / 1500), rows=np.arange(2, 8))
    family = fit_family(data.tokens, data.accuracy, "exponential")
    task = fit_task(data, task="t")
    service = fit_service(np.repeat([100.0, 400.0, 900.0], 4), rng.gamma(4.0, 0.25, 12) + 1.0)
    cal = calibrate(ACC_CSV, build=False, progress=False)
    assert cal.scenario is None
    for x in (data, cvxalloc.fit.ServiceData(t, 2 * t), family, task, service, cal):
        assert_same(x, rebuilt(x))
