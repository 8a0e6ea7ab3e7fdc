"""Regression-test your own solver against the certified reference.

Layer: workflows.

Two tools, the same ones cvxalloc's own test-suite uses:

* :func:`scenarios`: a hypothesis strategy drawing valid scenarios across regimes
  (light and heavy load, near saturation, maximum budgets unstable, bounds
  active, N = 1, identical types, every accuracy family, scv and variance on
  and off).
* :func:`assert_near_optimal`: solves the conic reference, certifies it, and
  fails with a readable message (objective shortfall, worst types) if an
  allocation is infeasible or further from the optimum than ``rtol``; with
  ``tokens_rtol`` it also compares the tokens, type by type, wherever the
  objective is not flat (:func:`flat_types`).

See docs/testing.md for a complete example.

Examples
--------
>>> from hypothesis import given, settings
>>> from cvxalloc.testing import scenarios, assert_near_optimal
>>> @settings(max_examples=5, deadline=None)
... @given(scenarios(max_n=5))
... def test_mine(sc):
...     assert_near_optimal(sc, my_solver(sc), rtol=1e-6)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .accuracy import FAMILIES, AccuracyCurves, Exponential, Logarithmic, Power
from .certificate import certify, relative_scale
from .objective import Objective
from .scenario import Scenario
from .solve import solve

__all__ = ["scenarios", "random_scenario", "assert_near_optimal", "flat_types", "LOADS"]

#: Load regimes: utilization at the maximum budgets drawn from these ranges.
LOADS: dict[str, tuple[float, float]] = {
    "light": (0.02, 0.5),
    "heavy": (0.7, 0.97),
    "saturated": (0.97, 0.9999),
    "overloaded": (1.2, 30.0),
}


def random_scenario(
    rng: np.random.Generator | int,
    n: int,
    *,
    load: str = "heavy",
    families: Sequence[str] = tuple(FAMILIES),
    identical: bool = False,
    scv: bool = True,
    variance: bool = True,
    lower_bounds: bool = True,
    latency_weight: float | None = None,
) -> Scenario:
    """One random valid scenario (the generator behind :func:`scenarios`).

    Parameters
    ----------
    rng : numpy.random.Generator or int
        The generator, or a seed for ``numpy.random.default_rng`` (what
        :func:`scenarios` passes, so a failing case prints as a call that
        rebuilds it).
    n : int
        Number of task types.
    load : {"light", "heavy", "saturated", "overloaded"}
        Utilization at the maximum budgets (overloaded: the maximum budgets
        are unstable, the minimum ones are not).
    families : sequence of str
        Accuracy families to draw from.
    identical : bool
        All types equal (probabilities too).
    scv, variance : bool
        Draw non-zero service-time spreads.
    lower_bounds : bool
        Draw non-zero minimum budgets for some types.
    latency_weight : float, optional
        Fix ``gamma`` (default: log-uniform in [1e-5, 1e-1]).

    Examples
    --------
    >>> from cvxalloc.testing import random_scenario
    >>> a = random_scenario(7, 3, load="light", families=["power"])
    >>> b = random_scenario(7, 3, load="light", families=["power"])
    >>> bool((a.max_tokens == b.max_tokens).all()), a.accuracy.family_names
    (True, ['power', 'power', 'power'])
    """
    rng = np.random.default_rng(rng)
    m = 1 if identical else n
    fam_names = rng.choice(list(families), size=m)
    hi = np.exp(rng.uniform(np.log(256), np.log(32768), m))
    lo = (
        np.where(rng.random(m) < 0.3, rng.uniform(0, 0.4, m) * hi, 0.0)
        if lower_bounds
        else np.zeros(m)
    )
    a = rng.uniform(0, 3, m)
    b = np.exp(rng.uniform(np.log(1e-3), np.log(5e-2), m))
    k = rng.uniform(0, 2, m) if scv else np.zeros(m)
    v = np.where(rng.random(m) < 0.5, rng.uniform(0, 100, m), 0.0) if variance else np.zeros(m)
    w = rng.uniform(0.5, 3, m)
    floor = rng.uniform(0, 0.5, m)
    ceiling = floor + rng.uniform(0.05, 1, m) * (1 - floor)
    scale = np.exp(rng.uniform(np.log(50), np.log(20000), m))
    expo = rng.uniform(0.2, 2.0, m)
    gain = rng.uniform(0.05, 1, m) * (1 - floor) / np.log1p(hi / scale)

    def rep(x):
        return np.repeat(x, n) if identical else x

    hi, lo, a, b, k, v, w = map(rep, (hi, lo, a, b, k, v, w))
    floor, ceiling, scale, expo, gain = map(rep, (floor, ceiling, scale, expo, gain))
    fam_names = np.repeat(fam_names, n) if identical else fam_names
    p = np.full(n, 1.0 / n) if identical else rng.dirichlet(np.full(n, 0.7))
    p = np.maximum(p, 1e-6)
    p = p / p.sum()

    blocks = []
    for name in dict.fromkeys(fam_names):
        idx = np.flatnonzero(fam_names == name)
        if name == "exponential":
            fam = Exponential(floor=floor[idx], ceiling=ceiling[idx], scale=scale[idx])
        elif name == "power":
            fam = Power(
                floor=floor[idx], ceiling=ceiling[idx], scale=scale[idx], exponent=expo[idx]
            )
        else:
            fam = Logarithmic(floor=floor[idx], gain=gain[idx], scale=scale[idx])
        blocks.append((fam, idx))
    curves = AccuracyCurves(blocks, n)

    m1_hi = float(p @ (a + b * hi))
    m1_lo = float(p @ (a + b * lo))
    rho_lo_room = m1_lo / m1_hi
    lo_r, hi_r = LOADS[load]
    target = rng.uniform(lo_r, hi_r)
    lam = target / m1_hi
    if lam * m1_lo >= 0.95:  # keep the minimum budgets clearly stable
        lam = rng.uniform(0.3, 0.95) / m1_lo
    del rho_lo_room
    gamma = (
        float(np.exp(rng.uniform(np.log(1e-5), np.log(1e-1))))
        if latency_weight is None
        else latency_weight
    )
    if gamma == 0 and lam * m1_hi >= 1:
        gamma = 1e-3
    return Scenario.from_arrays(
        probability=p,
        weight=w,
        min_tokens=lo,
        max_tokens=hi,
        base=a,
        per_token=b,
        scv=k,
        variance=v,
        accuracy=curves,
        arrival_rate=lam,
        latency_weight=gamma,
    )


def scenarios(
    min_n: int = 1,
    max_n: int = 8,
    loads: Sequence[str] = tuple(LOADS),
    families: Sequence[str] = tuple(FAMILIES),
    spreads: bool | None = None,
):
    """Hypothesis strategy of valid scenarios across regimes.

    Parameters
    ----------
    min_n, max_n : int
        Range of the number of task types.
    loads : sequence of str
        Regimes from :data:`LOADS` to draw.
    families : sequence of str
        Accuracy families to draw (each type draws one).
    spreads : bool, optional
        Force scv and variance on (True) or off (False); default: drawn.

    Notes
    -----
    Regime flags are drawn by hypothesis (so failures shrink to a regime);
    the numbers within a regime come from a numpy generator seeded by a drawn
    integer, which keeps large N fast. A failing case's report carries a line
    ``scenario: cvxalloc.testing.random_scenario(3141, 4, load='heavy', ...)``
    per drawn scenario: the call that rebuilds it.
    """
    from hypothesis import note
    from hypothesis import strategies as st

    @st.composite
    def _draw(draw):
        n = draw(st.integers(min_n, max_n))
        load = draw(st.sampled_from(list(loads)))
        fams = draw(st.lists(st.sampled_from(list(families)), min_size=1, unique=True))
        identical = draw(st.booleans()) if n > 1 and draw(st.integers(0, 5)) == 0 else False
        scv = draw(st.booleans()) if spreads is None else spreads
        variance = draw(st.booleans()) if spreads is None else spreads
        lower = draw(st.booleans())
        gamma_zero = load in ("light", "heavy") and draw(st.integers(0, 9)) == 0
        seed = draw(st.integers(0, 2**32 - 1))
        kw = dict(
            load=load,
            families=fams,
            identical=identical,
            scv=scv,
            variance=variance,
            lower_bounds=lower,
            latency_weight=0.0 if gamma_zero else None,
        )
        # A failing case's report carries the call that rebuilds it (the scenario's
        # own repr is a summary).
        args = ", ".join([str(seed), str(n)] + [f"{k}={v!r}" for k, v in kw.items()])
        note(f"scenario: cvxalloc.testing.random_scenario({args})")
        return random_scenario(seed, n, **kw)

    return _draw()


def flat_types(
    scenario: Scenario,
    tokens: np.ndarray,
    reference: np.ndarray,
    loss: float,
    reference_gap: float,
    tokens_rtol: float = 1e-3,
) -> np.ndarray:
    """Types whose tokens the objective cannot pin down to ``tokens_rtol`` of the box.

    ``W`` is convex, so ``-Hess U >= diag(p_i w_i |A_i''(t_i)|)`` on the stable
    region, and ``|A''|`` decreases in ``t``. Along the segment from the optimum
    ``t*`` to a feasible ``t`` (stable, by convexity of the stable region), and
    since ``grad U(t*) . (t - t*) <= 0``,
    ``U* - U(t) >= 1/2 sum_i mu_i (t_i - t*_i)^2`` with
    ``mu_i = p_i w_i |A_i''(max(t_i, t*_i))|``. So an allocation with
    ``U* - U(t) <= loss`` has ``|t_i - t*_i| <= sqrt(2 loss / mu_i)``, and the
    reference (certified gap ``reference_gap``) is within
    ``sqrt(2 reference_gap / mu_i)`` of ``t*``. Type i is *flat* when the sum of
    the two exceeds ``tokens_rtol`` of its box width (``mu_i`` evaluated at the
    larger of the two tokens): there the objective cannot tell the allocations
    apart at that level, and their tokens are not compared. Elsewhere a token
    difference above ``tokens_rtol`` contradicts the model (a wrong gradient,
    curvature or certificate), which is what the comparison catches.

    Parameters
    ----------
    scenario : Scenario
    tokens, reference : ndarray
        The allocation under test and the reference allocation.
    loss : float
        A proven bound on ``U* - U(tokens)`` (e.g. ``U_ref + reference_gap - U``).
    reference_gap : float
        The reference's certified (Frank-Wolfe) gap.
    tokens_rtol : float
        Allowed token difference as a fraction of each box width.

    Returns
    -------
    ndarray of bool
        True where type i is flat.
    """
    t = np.asarray(tokens, dtype=float)
    r = np.asarray(reference, dtype=float)
    width = scenario.max_tokens - scenario.min_tokens
    mu = scenario.probability * scenario.weight * np.abs(scenario.accuracy.d2(np.maximum(t, r)))
    with np.errstate(divide="ignore", invalid="ignore"):
        allowance = np.sqrt(2 * max(loss, 0.0) / mu) + np.sqrt(2 * max(reference_gap, 0.0) / mu)
    allowance = np.where(mu > 0, allowance, np.inf)
    return (allowance > tokens_rtol * width) | (width == 0)


def assert_near_optimal(
    scenario: Scenario,
    tokens: np.ndarray,
    rtol: float = 1e-7,
    reference=None,
    worst: int = 5,
    tokens_rtol: float | None = None,
):
    """Fail unless ``tokens`` is feasible and within ``rtol`` of the certified optimum.

    Parameters
    ----------
    scenario : Scenario
    tokens : array_like
        The allocation under test, in task order.
    rtol : float
        Allowed shortfall relative to ``|U*|``: passes when
        ``U(tokens) >= U_ref - rtol * |U_ref|`` where ``U_ref`` is the
        polished conic optimum (itself certified within ~1e-10).
    reference : Result, optional
        A reference result to reuse (default: solve ``method="conic"``).
    worst : int
        How many worst types to list in the failure message.
    tokens_rtol : float, optional
        Also require ``|t_i - t_ref_i| <= tokens_rtol * (hi_i - lo_i)`` for
        every type where the objective is not flat (see :func:`flat_types`).

    Returns
    -------
    Result
        The reference result.

    Raises
    ------
    AssertionError
        With the objective shortfall and the types furthest from the reference.
    """
    t = np.asarray(tokens, dtype=float)
    if t.shape != (scenario.n,):
        raise AssertionError(f"tokens has shape {t.shape}, expected ({scenario.n},)")
    lo, hi = scenario.min_tokens, scenario.max_tokens
    if not np.all(np.isfinite(t)):
        raise AssertionError("tokens contains NaN or inf")
    out = np.flatnonzero((t < lo - 1e-9 * (1 + hi)) | (t > hi + 1e-9 * (1 + hi)))
    if out.size:
        i = out[0]
        raise AssertionError(
            f'task "{scenario.names[i]}": tokens {t[i]:g} outside bounds '
            f"[{lo[i]:g}, {hi[i]:g}] ({out.size} types out of bounds)"
        )
    t = np.clip(t, lo, hi)
    rho = scenario.utilization(t)
    if rho >= 1:
        raise AssertionError(f"allocation is unstable: utilization {rho:.6g} >= 1")
    ref = reference if reference is not None else solve(scenario, method="conic")
    obj = Objective(scenario)
    U = obj.value(t)
    U_ref = ref.objective
    cert = certify(scenario, t, obj)
    if cert.upper_bound < U_ref - 1e-12 * relative_scale(U_ref):
        raise AssertionError(
            f"certificate inconsistency: Frank-Wolfe bound {cert.upper_bound!r} of the tested "
            f"allocation is below the reference objective {U_ref!r}"
        )
    if U > ref.certificate.upper_bound + 1e-12 * relative_scale(U_ref):
        raise AssertionError(
            f"certificate inconsistency: the tested allocation's utility {U!r} exceeds the "
            f"reference's proven upper bound {ref.certificate.upper_bound!r}"
        )
    shortfall = U_ref - U
    allowed = rtol * relative_scale(U_ref)
    if shortfall > allowed:
        width = np.maximum(hi - lo, 1e-300)
        dist = np.abs(t - ref.tokens) / width
        order = np.argsort(-dist)[:worst]
        rows = "\n".join(
            f'  task "{scenario.names[i]}": tokens {t[i]:.6g} vs reference '
            f"{ref.tokens[i]:.6g} ({dist[i]:.2%} of its box)"
            for i in order
        )
        raise AssertionError(
            f"allocation is {shortfall:.3e} below the reference optimum "
            f"({shortfall / relative_scale(U_ref):.3e} of |U*|, allowed {rtol:g}); "
            f"U = {U!r}, U_ref = {U_ref!r}, its own certified gap {cert.gap:.3e}.\n"
            f"Types furthest from the reference:\n{rows}"
        )
    if tokens_rtol is not None:
        width = hi - lo
        loss = U_ref + ref.certificate.gap - U  # proven bound on U* - U(t)
        flat = flat_types(scenario, t, ref.tokens, loss, ref.certificate.gap, tokens_rtol)
        dist = np.where(flat, 0.0, np.abs(t - ref.tokens) / np.where(width > 0, width, 1.0))
        bad = np.flatnonzero(dist > tokens_rtol)
        if bad.size:
            order = bad[np.argsort(-dist[bad])][:worst]
            rows = "\n".join(
                f'  task "{scenario.names[i]}": tokens {t[i]:.6g} vs reference '
                f"{ref.tokens[i]:.6g} ({dist[i]:.2%} of its box)"
                for i in order
            )
            raise AssertionError(
                f"{bad.size} type(s) more than {tokens_rtol:g} of their box from the reference "
                f"where the objective is not flat (objective shortfall {shortfall:.3e}):\n{rows}"
            )
    return ref
