"""Bounds of the curvature of ``U`` over a box intersected with a utilization cap.

:func:`curvature_bound` is what the projected gradient's step comes from: an
upper bound of ``lambda_max(Q^{-1/2} (-Hess U) Q^{-1/2})`` over
``[lower, upper] ∩ {rho <= rho_cap}``, O(N), from the corner values of the
Hessian's diagonal-plus-rank-2 form (``Objective.hessian_parts``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..objective import Objective
from ._iterate import marginal_bounds

__all__ = ["curvature_bound", "POWER_STEPS"]

#: Power iterations behind the Collatz-Wielandt curvature bound.
POWER_STEPS = 8


def curvature_bound(
    obj: Objective,
    lower: np.ndarray,
    upper: np.ndarray,
    rho_cap: float,
    q: np.ndarray | None = None,
    power_steps: int = POWER_STEPS,
    jacobi: bool = False,
) -> dict[str, Any]:
    """Bound of ``lambda_max(Q^{-1/2} (-Hess U) Q^{-1/2})`` over the set.

    The set is ``[lower, upper] ∩ {rho <= rho_cap}``. Every entry of
    ``-Hess U = diag(d) + gamma V M_W V^T`` is non-negative and grows with ``t``
    and ``rho``, so at every point of the set the matrix is entrywise below
    ``A = diag(dbar) + Vbar Mbar Vbar^T``, its corner values. Two bounds of
    ``lambda_max(A)`` are computed and the smaller is returned:

    * Weyl's inequality: ``max_i dbar_i + m11 |c|^2 + m12 (|c| |e| + c.e)``;
    * Collatz-Wielandt: for symmetric non-negative matrices ``lambda_max`` is
      the Perron root, which is monotone in the entries and at most
      ``max_i (A x)_i / x_i`` for any positive ``x``; ``x`` is taken after
      ``power_steps`` power iterations (O(N) each: ``A`` is diagonal plus rank 2).

    Parameters
    ----------
    obj : Objective
    lower, upper : ndarray
        The box (within the token box).
    rho_cap : float
        Utilization cap of the set (1 for none; then ``upper`` must be stable).
    q : ndarray, optional
        Diagonal metric (None: Euclidean).
    jacobi : bool
        Use the Jacobi metric: ``q`` = the diagonal bound computed here (entries
        that are 0 replaced by 1), so one call gives both the metric and its
        bound. Not together with ``q``.
    power_steps : int
        Power iterations for the Collatz-Wielandt bound (0: Weyl's bound only).

    Returns
    -------
    dict
        ``L`` (the bound), ``diagonal`` (bound of each diagonal entry of
        ``-Hess U`` over the set, unscaled), ``diagonal_part`` and ``rank2_part``
        (the two terms of Weyl's bound), ``weyl`` and ``collatz_wielandt`` (the
        two bounds; the latter ``inf`` when not computed), ``rho`` (largest
        utilization on the set), ``metric`` (the ``q`` used, None when Euclidean).
    """
    if jacobi and q is not None:
        raise ValueError("curvature_bound: give q or jacobi=True, not both")
    sc = obj.scenario
    lat = obj.latency
    gamma, lam = sc.latency_weight, sc.arrival_rate
    mb = marginal_bounds(obj, upper, rho_cap)
    rc, s = float(mb["rho"]), mb["s"]
    p, b = sc.probability, sc.per_token
    d_acc = obj.pw * np.abs(sc.accuracy.d2(lower))
    if gamma == 0 or lam == 0:
        d_lat = np.zeros(sc.n)
        m11 = m12 = 0.0
    elif rc >= 1:  # the set reaches the stability limit: no finite bound
        inf = np.inf
        diag_inf = np.full(sc.n, inf)
        return {
            "L": inf,
            "diagonal": diag_inf,
            "diagonal_part": inf,
            "rank2_part": inf,
            "weyl": inf,
            "collatz_wielandt": inf,
            "rho": rc,
            "metric": diag_inf if jacobi else q,
        }
    else:
        d_lat = gamma * float(mb["B"]) * lat.k1 * p * b**2
        m11 = gamma * float(mb["H11"])
        m12 = gamma * 2.0 * float(mb["H12"])
    c = p * b
    e = c * lat.k1 * s
    diag = d_acc + d_lat + m11 * c**2 + 2 * m12 * c * e
    dvec = d_acc + d_lat
    if jacobi:
        q = np.where(diag > 0, diag, 1.0)
    if q is not None:
        r = 1.0 / np.sqrt(q)
        c, e, dvec = c * r, e * r, dvec / q
    d_part = float(np.max(dvec))
    nc, ne = float(np.linalg.norm(c)), float(np.linalg.norm(e))
    r2 = m11 * nc**2 + m12 * (nc * ne + float(c @ e))
    weyl = d_part + r2
    cw = np.inf
    if power_steps > 0 and np.isfinite(weyl) and weyl > 0:

        def matvec(x: np.ndarray) -> np.ndarray:
            cx, ex = float(c @ x), float(e @ x)
            return dvec * x + c * (m11 * cx + m12 * ex) + e * (m12 * cx)

        x = np.ones(sc.n)
        for _ in range(power_steps):
            y = matvec(x)
            top = float(np.max(y))
            if not (np.isfinite(top) and top > 0):
                break
            x = np.maximum(y / top, 1e-12)
        with np.errstate(over="ignore", invalid="ignore"):
            cw = float(np.max(matvec(x) / x))
        # rounding: the products sum N + 3 non-negative terms
        cw = cw * (1 + 4 * (sc.n + 4) * np.finfo(float).eps) if np.isfinite(cw) else np.inf
    return {
        "L": min(weyl, cw),
        "diagonal": diag,
        "diagonal_part": d_part,
        "rank2_part": r2,
        "weyl": weyl,
        "collatz_wielandt": cw,
        "rho": rc,
        "metric": q,
    }
