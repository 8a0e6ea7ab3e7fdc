"""The exact integer optimum (SCIP) against brute-force enumeration.

Every test enumerates all grid allocations of a small instance (N <= 4, up to
12 levels each, menus, steps and whole tokens, every accuracy family) and
demands the mixed-integer answer equal the enumerated optimum to 1e-12 of
``|U|``, never fall below rounding, stay on the grid, within bounds and stable.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import cvxalloc
from cvxalloc.accuracy import Exponential, Logarithmic, Power
from cvxalloc.integer import grid, round_allocation
from cvxalloc.objective import Objective

pytest.importorskip("pyscipopt")

from test_integer import (  # noqa: E402
    FAMILIES,
    _scaled_tokens,
    brute_force,
    stable_grid_scenario,
)

#: 1e-12 of |U|: the agreement demanded with brute force.
RTOL = 1e-12

#: Instances (found by a seeded search) where rounding + local search stops at a
#: worse local optimum; brute force below decides the truth.
ROUNDING_TRAPS = [
    {
        "queue": {"arrival_rate": 0.16359051504086708, "latency_weight": 7.289031605424761e-05},
        "task": [
            {
                "name": "type0",
                "probability": 0.16034002105471412,
                "weight": 2.7535786195473495,
                "min_tokens": 0.0,
                "max_tokens": 10669.882791303926,
                "step": 1074.1295868761554,
                "service": {
                    "base": 2.6915498660584403,
                    "per_token": 0.0021533943407017362,
                    "scv": 1.5875217496505336,
                    "variance": 14.931214614943777,
                },
                "accuracy": {
                    "model": "power",
                    "floor": 0.3219367099608919,
                    "ceiling": 0.5994911730816714,
                    "scale": 6237.798196270021,
                    "exponent": 0.2929436372554486,
                },
            },
            {
                "name": "type1",
                "probability": 0.20408584223090773,
                "weight": 2.847484911982693,
                "min_tokens": 0.0,
                "max_tokens": 4319.617753904596,
                "step": 523.9653718418107,
                "service": {
                    "base": 1.1234449366115313,
                    "per_token": 0.017771872100367004,
                    "scv": 0.48326199737597886,
                    "variance": 0.0,
                },
                "accuracy": {
                    "model": "power",
                    "floor": 0.4167287947969879,
                    "ceiling": 0.8928168052587847,
                    "scale": 1288.502825853855,
                    "exponent": 1.565928743048792,
                },
            },
            {
                "name": "type2",
                "probability": 0.28445435223650795,
                "weight": 0.9490352847760639,
                "min_tokens": 51.23317237214424,
                "max_tokens": 493.95711381427566,
                "step": 45.729491805709785,
                "service": {
                    "base": 2.213583946907798,
                    "per_token": 0.004682210472401133,
                    "scv": 0.4785864493791667,
                    "variance": 65.3851318772904,
                },
                "accuracy": {
                    "model": "power",
                    "floor": 0.34834380336562587,
                    "ceiling": 0.9942299756452556,
                    "scale": 4477.4970310678,
                    "exponent": 1.3941886945114796,
                },
            },
            {
                "name": "type3",
                "probability": 0.35111978447787023,
                "weight": 0.7734991010540542,
                "min_tokens": 0.0,
                "max_tokens": 10627.315732254792,
                "step": 5804.714728125255,
                "service": {
                    "base": 1.2422622880604082,
                    "per_token": 0.005564474198713759,
                    "scv": 1.4757870906718693,
                    "variance": 82.67425421048745,
                },
                "accuracy": {
                    "model": "power",
                    "floor": 0.16807875749049128,
                    "ceiling": 0.3867338728702693,
                    "scale": 17373.65704081646,
                    "exponent": 0.47116037839856356,
                },
            },
        ],
    },
    {
        "queue": {"arrival_rate": 0.04062822279496768, "latency_weight": 0.0002624591215967518},
        "task": [
            {
                "name": "type0",
                "probability": 0.12315136437373202,
                "weight": 1.564138907699286,
                "min_tokens": 0.0,
                "max_tokens": 8859.184513095073,
                "levels": [219.0, 6370.0, 6669.0, 8181.0],
                "service": {
                    "base": 1.3840179838063102,
                    "per_token": 0.003883860458684115,
                    "scv": 0.3218105722260023,
                    "variance": 0.0,
                },
                "accuracy": {
                    "model": "logarithmic",
                    "floor": 0.469661364834199,
                    "gain": 0.7408098032486827,
                    "scale": 16271.731955749037,
                },
            },
            {
                "name": "type1",
                "probability": 0.14742753503283168,
                "weight": 1.8993714715931918,
                "min_tokens": 0.0,
                "max_tokens": 11087.13579854646,
                "step": 5543.56789927323,
                "service": {
                    "base": 0.4131904882364763,
                    "per_token": 0.006747652391470567,
                    "scv": 1.6009315103654362,
                    "variance": 61.019963844499884,
                },
                "accuracy": {
                    "model": "logarithmic",
                    "floor": 0.15629938407012073,
                    "gain": 0.4833282834111076,
                    "scale": 7748.323357036601,
                },
            },
            {
                "name": "type2",
                "probability": 0.4456436434491234,
                "weight": 0.5428617056616434,
                "min_tokens": 0.0,
                "max_tokens": 628.4334339903031,
                "step": 209.47781133010105,
                "service": {
                    "base": 1.606264764951446,
                    "per_token": 0.011183614964777112,
                    "scv": 1.9647805456876881,
                    "variance": 35.0699316619547,
                },
                "accuracy": {
                    "model": "logarithmic",
                    "floor": 0.32341477814475134,
                    "gain": 0.03106211122433919,
                    "scale": 51.85301270430187,
                },
            },
            {
                "name": "type3",
                "probability": 0.2837774571443129,
                "weight": 1.4823764570694848,
                "min_tokens": 183.1066870831868,
                "max_tokens": 931.4973252238174,
                "step": 83.94930094060666,
                "service": {
                    "base": 2.4461325908201443,
                    "per_token": 0.0033924178845373357,
                    "scv": 1.4338886782566662,
                    "variance": 83.65684581864772,
                },
                "accuracy": {
                    "model": "logarithmic",
                    "floor": 0.3264766777502072,
                    "gain": 3.8365980298102227,
                    "scale": 16834.07788728892,
                },
            },
        ],
    },
    {
        "queue": {"arrival_rate": 0.035316573022208066, "latency_weight": 0.0001216886360767621},
        "task": [
            {
                "name": "type0",
                "probability": 0.445062369368037,
                "weight": 2.0156089620762883,
                "min_tokens": 0.0,
                "max_tokens": 11338.115886313743,
                "step": 1223.4689653155244,
                "service": {
                    "base": 1.7862639374368934,
                    "per_token": 0.045392904180057175,
                    "scv": 1.5741512960471402,
                    "variance": 88.84087467824298,
                },
                "accuracy": {
                    "model": "exponential",
                    "floor": 0.025833123808378877,
                    "ceiling": 0.4223599204827656,
                    "scale": 1258.103113942258,
                },
            },
            {
                "name": "type1",
                "probability": 0.22970299943914865,
                "weight": 0.69156771099126,
                "min_tokens": 0.0,
                "max_tokens": 768.2007276042731,
                "step": 85.3556364004748,
                "service": {
                    "base": 0.5328771373306669,
                    "per_token": 0.005941930130963328,
                    "scv": 1.8890679856318566,
                    "variance": 98.26328445413452,
                },
                "accuracy": {
                    "model": "exponential",
                    "floor": 0.34987986288458034,
                    "ceiling": 0.7024964636459337,
                    "scale": 6823.291143286185,
                },
            },
            {
                "name": "type2",
                "probability": 0.11697281111604824,
                "weight": 1.8548701785351134,
                "min_tokens": 38.32772028077213,
                "max_tokens": 292.7394594908898,
                "step": 28.267971023346405,
                "service": {
                    "base": 1.5229477678519152,
                    "per_token": 0.013665384265888725,
                    "scv": 0.44331615597185525,
                    "variance": 25.259956227468482,
                },
                "accuracy": {
                    "model": "exponential",
                    "floor": 0.0032060058762921617,
                    "ceiling": 0.5057945278428483,
                    "scale": 14238.44354313923,
                },
            },
            {
                "name": "type3",
                "probability": 0.20826182007676602,
                "weight": 0.9706811623856616,
                "min_tokens": 0.0,
                "max_tokens": 1087.890629594989,
                "step": 1001.9881398889944,
                "service": {
                    "base": 2.343679908099016,
                    "per_token": 0.017073281276549758,
                    "scv": 1.85860726959863,
                    "variance": 40.61761226318388,
                },
                "accuracy": {
                    "model": "exponential",
                    "floor": 0.2604853872601548,
                    "ceiling": 0.9620876958291359,
                    "scale": 6331.505736632498,
                },
            },
        ],
    },
    {
        "queue": {"arrival_rate": 0.13948558313933665, "latency_weight": 3.517945568580452e-05},
        "task": [
            {
                "name": "type0",
                "probability": 0.3157277218168698,
                "weight": 0.7369022996659348,
                "min_tokens": 0.0,
                "max_tokens": 293.32470052679685,
                "levels": [0.0, 108.0, 157.0, 179.0, 220.0, 224.0, 241.0, 260.0, 285.0],
                "service": {
                    "base": 0.10734569765873092,
                    "per_token": 0.0013677028124768344,
                    "scv": 0.5316763051219326,
                    "variance": 0.0,
                },
                "accuracy": {
                    "model": "exponential",
                    "floor": 0.08694494101243322,
                    "ceiling": 0.8629042471026844,
                    "scale": 423.8113865760399,
                },
            },
            {
                "name": "type1",
                "probability": 0.06344179833148644,
                "weight": 1.2184878052223769,
                "min_tokens": 0.0,
                "max_tokens": 3720.6572851910623,
                "step": 473.0550551613493,
                "service": {
                    "base": 0.03534431113732084,
                    "per_token": 0.0029190116155681746,
                    "scv": 0.46140466370960387,
                    "variance": 0.0,
                },
                "accuracy": {
                    "model": "exponential",
                    "floor": 0.3567340512908649,
                    "ceiling": 0.5092496933216901,
                    "scale": 1443.5894127779848,
                },
            },
            {
                "name": "type2",
                "probability": 0.544643628595517,
                "weight": 2.3884907875877,
                "min_tokens": 0.0,
                "max_tokens": 5942.006472971692,
                "step": 5385.542147831727,
                "service": {
                    "base": 2.784867421762061,
                    "per_token": 0.0016109869555999987,
                    "scv": 0.8023987616929964,
                    "variance": 0.0,
                },
                "accuracy": {
                    "model": "exponential",
                    "floor": 0.0765495088201758,
                    "ceiling": 0.6318070392795878,
                    "scale": 203.1594195802814,
                },
            },
            {
                "name": "type3",
                "probability": 0.0761868512561269,
                "weight": 0.9727835297680936,
                "min_tokens": 526.4115826824307,
                "max_tokens": 2262.54360804332,
                "step": 868.0660126804447,
                "service": {
                    "base": 0.7072275188334297,
                    "per_token": 0.014626006275396971,
                    "scv": 1.164875989279998,
                    "variance": 10.089589323722127,
                },
                "accuracy": {
                    "model": "exponential",
                    "floor": 0.07939368293250815,
                    "ceiling": 0.34738120094429203,
                    "scale": 309.4887090674346,
                },
            },
        ],
    },
]


def check_exact(sc, res, u_bf):
    """The mixed-integer result equals brute force and is a valid grid allocation."""
    t = res.tokens
    assert res.method == "mixed-integer"
    assert np.all(t >= sc.min_tokens) and np.all(t <= sc.max_tokens)
    for i in range(sc.n):
        assert np.any(grid(sc, i) == t[i]), f"type {i}: {t[i]} is not a grid point"
    assert sc.utilization(t) < 1
    assert abs(res.objective - u_bf) <= RTOL * abs(u_bf), (res.objective, u_bf)
    d = res.diagnostics
    assert res.objective >= d["rounding_objective"]
    assert res.status == "optimal" and d["scip_status"] == "optimal"
    # SCIP's proven bound covers the optimum (up to its tolerance, in units of 1e-6 |U|)
    assert d["scip_bound"] >= u_bf - 1e-9 * abs(u_bf)
    # certified against the continuous bound, which covers the integer optimum
    cert = res.certificate
    assert cert.kind == "integer"
    assert cert.upper_bound >= u_bf - 1e-13 * abs(u_bf)
    assert cert.gap == pytest.approx(cert.upper_bound - res.objective, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["menu", "step", "mixed"])
def test_mixed_integer_equals_brute_force(rng, family, kind):
    for load in ("light", "heavy", "saturated", "overloaded"):
        sc = stable_grid_scenario(rng, int(rng.integers(1, 5)), family, kind, load)
        _, u_bf = brute_force(sc)
        check_exact(sc, cvxalloc.solve(sc, method="mixed-integer"), u_bf)


@pytest.mark.parametrize("case", range(len(ROUNDING_TRAPS)))
def test_mixed_integer_beats_rounding_where_rounding_is_wrong(case):
    sc = cvxalloc.Scenario.from_dict(ROUNDING_TRAPS[case])
    _, u_bf = brute_force(sc)
    rounded = round_allocation(sc)
    assert rounded.objective < u_bf - 1e-6 * abs(u_bf)  # the trap: a worse local optimum
    res = cvxalloc.solve(sc, method="mixed-integer")
    check_exact(sc, res, u_bf)
    assert res.diagnostics["source"].startswith("scip")
    assert res.diagnostics["improvement_over_rounding"] > 0
    # both carry the same continuous bound; the rounding loss is inside its gap
    assert u_bf - rounded.objective <= rounded.certificate.gap


def _tiny_whole_token_scenario(family, n, seed):
    r = np.random.default_rng(seed)
    hi = r.integers(40, 90, n).astype(float)
    lo = np.where(r.random(n) < 0.3, r.integers(0, 10, n), 0).astype(float)
    scale = r.uniform(10, 60, n)
    if family == "exponential":
        acc = Exponential(floor=r.uniform(0, 0.3, n), ceiling=r.uniform(0.6, 1, n), scale=scale)
    elif family == "power":
        acc = Power(
            floor=r.uniform(0, 0.3, n),
            ceiling=r.uniform(0.6, 1, n),
            scale=scale,
            exponent=r.uniform(0.3, 2, n),
        )
    else:
        acc = Logarithmic(floor=r.uniform(0, 0.3, n), gain=r.uniform(0.05, 0.2, n), scale=scale)
    p = r.dirichlet(np.ones(n))
    a, b = r.uniform(0.1, 1, n), r.uniform(0.005, 0.05, n)
    lam = r.uniform(0.6, 1.3) / float(p @ (a + b * hi))  # near or past saturation at hi
    return cvxalloc.Scenario.from_arrays(
        probability=p,
        max_tokens=hi,
        min_tokens=lo,
        per_token=b,
        base=a,
        scv=r.uniform(0, 1, n),
        variance=r.uniform(0, 0.5, n),
        accuracy=acc,
        arrival_rate=lam,
        latency_weight=float(r.uniform(0.01, 0.5)),
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_lazy_chords_on_whole_tokens_equal_brute_force(family):
    # whole tokens (step 1), 40-90 levels per type; full_chords=8 forces the
    # cutting-plane loop (chords added around SCIP's point until none is violated)
    for seed in range(2):
        sc = _tiny_whole_token_scenario(family, 2, seed)
        obj = Objective(sc)
        grids = [grid(sc, i) for i in range(sc.n)]
        T = np.array(list(itertools.product(*grids)))
        u = np.array([obj.value(t) for t in T])
        u_bf = float(u.max())
        res = cvxalloc.solve(sc, method="mixed-integer", full_chords=8)
        check_exact(sc, res, u_bf)
        assert res.diagnostics["chords"] < sum(g.size - 1 for g in grids)


def test_whole_tokens_on_the_example_match_rounding_or_better(example, example_optimum):
    res = cvxalloc.solve(example, method="mixed-integer", continuous=example_optimum)
    rounded = round_allocation(example, continuous=example_optimum)
    assert res.objective >= rounded.objective
    assert res.status == "optimal"
    assert np.array_equal(res.tokens, np.round(res.tokens))
    d = res.diagnostics
    # SCIP's bound and the objective agree to its resolution (1e-6 of |U| per unit)
    assert d["scip_gap"] <= 1e-9 * abs(res.objective)
    assert res.certificate.gap == pytest.approx(
        example_optimum.certificate.upper_bound - res.objective, rel=1e-6, abs=1e-15
    )


def test_mixed_integer_json_round_trip(example):
    sc = example.with_(step=[512.0] * example.n)
    out = cvxalloc.solve(sc, method="mixed-integer").to_dict()
    for key in ("status", "method", "tokens", "objective", "certificate"):
        assert key in out
    assert out["certificate"]["kind"] == "integer"
    assert out["diagnostics"]["scip_status"] == "optimal"


def test_cutting_plane_loop_reaches_the_brute_force_optimum():
    # only the four chords around the rounded point to start with: SCIP's first
    # answer overstates the accuracy elsewhere, chords are added until it does not
    rounds = []
    for data in ROUNDING_TRAPS:
        sc = cvxalloc.Scenario.from_dict(data)
        _, u_bf = brute_force(sc)
        res = cvxalloc.solve(sc, method="mixed-integer", full_chords=2, chord_spread=False)
        check_exact(sc, res, u_bf)
        assert res.diagnostics["violated_chords_left"] == 0
        rounds.append(res.diagnostics["rounds"])
    assert max(rounds) >= 2


@pytest.mark.parametrize("f", [1e-100, 1e6])
def test_mixed_integer_at_any_token_scale_equals_brute_force(rng, f):
    # the same problems in other token units (issue 22: tiny steps overflowed the grid)
    for kind in ("step", "menu"):
        sc = _scaled_tokens(stable_grid_scenario(rng, 3, "power", kind, "overloaded"), f)
        _, u_bf = brute_force(sc)
        check_exact(sc, cvxalloc.solve(sc, method="mixed-integer"), u_bf)


def test_a_fine_grid_builds_only_the_chords_it_uses(example):
    # 4.4e12 levels on chat: chords are built from their two levels, not from a table
    # of every level up to the highest chord (which asked for 30 TiB)
    hi = example.max_tokens[0]
    sc = example.with_(step=[1024 * np.spacing(hi)] + [1.0] * (example.n - 1))
    res = cvxalloc.solve(sc, method="mixed-integer", max_rounds=2, time_limit=10)
    d = res.diagnostics
    assert np.all(res.tokens >= sc.min_tokens) and np.all(res.tokens <= sc.max_tokens)
    assert res.objective >= d["rounding_objective"]
    # honest: optimal only with a bound that covers the answer
    assert res.status != "optimal" or d["scip_bound"] >= res.objective - 1e-9 * abs(res.objective)
    assert res.objective <= res.certificate.upper_bound


def test_a_scip_bound_below_the_answer_is_not_called_optimal(monkeypatch, example):
    from cvxalloc.solvers import mixed_integer as mi

    sc = example.with_(step=[2048.0] * example.n)
    honest = cvxalloc.solve(sc, method="mixed-integer")
    assert honest.status == "optimal"
    # SCIP's "proven" bound 1e-3 of |U| under the grid point it returned (the
    # 1e-300 step once reported 0.59528 with the grid holding 0.59770)
    monkeypatch.setattr(mi, "_scip_bound_units", lambda smodel, problem: -1e3)
    res = cvxalloc.solve(sc, method="mixed-integer")
    assert res.objective == honest.objective
    assert res.status == "optimal_inaccurate"
    assert "not a proof" in res.message
