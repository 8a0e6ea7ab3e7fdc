"""Operator constraints in the aggregate method: one more outer unknown per active constraint.

With multipliers ``mu_j >= 0`` on the scalar constraints (the token budget
``sum_i p_i t_i <= B``, the utilization cap ``lam m1 / c <= rho_max`` (``c`` the
capacity: 1, or ``c_max`` for a batching server; ``lam_c = lam / c``) and the
mean-latency SLO ``W <= L``, multiplier ``nu``), the Lagrangian's condition for
type ``i`` keeps the aggregate method's form::

    w_i A_i'(t_i) = (gamma + nu) b_i (A + B (1 + k_i) s_i) + mu_B + mu_rho lam_c b_i

so its tokens are again the root of ``A_i'(t) = alpha_i + beta_i t``, clipped
to ``[lo'_i, hi_i]`` (``lo'`` the lower bounds min_accuracy raises), with::

    alpha_i = ((gamma + nu) b_i (A + B (1 + k_i) a_i) + mu_B + mu_rho lam_c b_i) / w_i
    beta_i  = (gamma + nu) B (1 + k_i) b_i^2 / w_i

The outer system gains one equation per *active* constraint, its relative
slack::

    (1 - lam_c m1(T) - u,  m2(T) - m2,  (limit_j - value_j(T)) / limit_j  for active j) = 0

in the unknowns ``(u, m2, mu_j for active j)``. :meth:`Multipliers.newton`
solves it with the exact Jacobian: implicit differentiation of the per-type
equations gives ``dt_i = -r_i dphi_i`` with
``r_i = 1 / ((gamma + nu) B (1 + k_i) b_i^2 - w_i A_i''(t_i)) > 0``, and every
output (``m1``, ``m2``, ``sum p t``, hence ``W``) is a weighted sum of ``r_i``
times one of five per-type vectors: O(N) for the whole matrix.
:func:`active_set` moves constraints in (violated) and out (multiplier 0 with
slack) between Newton solves. The problem is strictly concave with a unique
KKT point, so when no constraint moves and Newton has converged, the point is
the optimum; the constrained certificate
(:func:`cvxalloc.constraints.certify_constrained`) proves how close it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._reduce import dot
from .._roots import brentq
from .reduction import Reduced

__all__ = ["Multipliers", "State", "active_set"]

#: The per-type vectors ``dphi_i / d(parameter)`` are combinations of these, in this order.
_BASIS = ("A", "B", "max_mean_tokens", "max_utilization", "max_mean_system_time")


@dataclass
class State:
    """One evaluation of the constrained outer map at ``z = (u, m2, mu_active)``."""

    z: np.ndarray
    tokens: np.ndarray
    m1: float
    m2: float
    A: float
    B: float
    slack: np.ndarray  # relative slack of every constraint (active or not)
    residual: np.ndarray

    def merit(self) -> float:
        """The largest residual, relative: ``|r1| / u``, ``|r2| / m2`` and the slacks."""
        u, m2 = max(self.z[0], 1e-300), max(self.z[1], 1e-300)
        r = self.residual
        return max(abs(r[0]) / u, abs(r[1]) / m2, *np.abs(r[2:]), 0.0)


class Multipliers(Reduced):
    """The aggregate outer system with multipliers on the scalar constraints.

    Built by :meth:`Reduced.of` (with ``lo = lo'``), then :meth:`constrain`.
    """

    def constrain(self, terms) -> Multipliers:
        """Attach the scalar constraint terms (:meth:`Constraints.terms` order)."""
        self.kinds = [tm.kind for tm in terms]
        self.limits = np.array([float(tm.limit) for tm in terms])
        self.scales = np.maximum(np.abs(self.limits), 1e-300)
        self.mu = np.zeros(len(terms))
        #: Multipliers held fixed outside the active set (the coordinate fallback sets them).
        self.fixed = np.zeros(len(terms))
        self.active: list[int] = []
        self._brackets: dict[tuple[int, ...], tuple[float, float]] = {}
        self.bw = self.b / self.w
        self.ca1, self.cb1 = self.bw * self.k1 * self.a, self.bw * self.b * self.k1
        self.inv_w, self.lbw = 1.0 / self.w, self.lam_c * self.bw  # d rho / d t_i over p_i w_i
        return self

    def multiplier(self, kind: str) -> float:
        """The current multiplier of constraint ``kind`` (0 when absent or inactive)."""
        return float(self.mu[self.kinds.index(kind)]) if kind in self.kinds else 0.0

    @property
    def G(self) -> float:
        """The price on ``W``: ``gamma`` plus the SLO's multiplier."""
        return self.gamma + self.multiplier("max_mean_system_time")

    def tokens(self, A: float, B: float, t0: np.ndarray | None = None) -> np.ndarray:
        """Per type, the root of the Lagrangian's condition, clipped to ``[lo', hi]``."""
        self.evaluations += 1
        G = self.G
        alpha = G * (self.bw * A + B * self.ca1) if G > 0 else np.zeros_like(self.bw)
        mu_b, mu_r = self.multiplier("max_mean_tokens"), self.multiplier("max_utilization")
        if mu_b > 0:
            alpha = alpha + mu_b * self.inv_w
        if mu_r > 0:
            alpha = alpha + mu_r * self.lbw
        beta = (G * B) * self.cb1 if G > 0 else np.zeros_like(self.bw)
        return self.curves.solve_marginal(alpha, beta, t0, self.lo, self.hi, self.d1_bounds)

    def u_bracket(self) -> tuple[float, float]:
        """``[u_min, u_max]`` holding the slack of the solution with the current active set.

        ``gamma > 0`` gives :meth:`Reduced.u_bracket`'s bound (``lo'`` is
        feasible, so ``U(t) >= U(lo')`` at the solution); an active SLO gives
        the queue's ``min_slack(L)``, an active utilization cap ``1 - rho_max``.
        The largest holds. (An inactive constraint's bound need not hold at the
        solution of the problem without it, which the active-set steps visit.)
        """
        key = tuple(self.active)
        if key in self._brackets:
            return self._brackets[key]
        u_max = 1.0 - self.lam_c * self.m1_lo
        bounds = [min(1e-300, u_max)]
        if self.gamma > 0 or self.lam_c * self.m1_hi < 1:
            bounds.append(Reduced.u_bracket(self)[0])
        kinds = [self.kinds[j] for j in self.active]
        if "max_mean_system_time" in kinds:
            L = self.limits[self.kinds.index("max_mean_system_time")]
            bounds.append(self.queue.min_slack(L, float(np.sum(self.p / self.k1)), self.pv))
        if "max_utilization" in kinds:
            bounds.append(1.0 - self.limits[self.kinds.index("max_utilization")])
        self._brackets[key] = (min(max(bounds), u_max), u_max)
        return self._brackets[key]

    def values(self, t: np.ndarray, m1: float, m2: float) -> np.ndarray:
        """Each constraint's value at ``t`` (moments ``m1``, ``m2`` of ``t``)."""
        out = np.empty(len(self.kinds))
        for j, kind in enumerate(self.kinds):
            if kind == "max_mean_tokens":
                out[j] = dot(self.p, t)
            elif kind == "max_utilization":
                out[j] = self.lam_c * m1
            else:
                out[j] = self.queue.value(m1, m2)
        return out

    def evaluate(self, z: np.ndarray, active: list[int], t0: np.ndarray | None = None) -> State:
        """The outer map at ``z = (u, m2, multipliers of the active constraints)``."""
        u, m2 = float(z[0]), float(z[1])
        self.mu[:] = self.fixed
        self.mu[active] = z[2:]
        with np.errstate(over="ignore"):  # u near 0 while gamma = 0: A unused
            A, B = self.queue.scalars(u, m2)[:2]
        t = self.tokens(A, B, t0)
        m1n, m2n = self.moments(t)
        slack = (self.limits - self.values(t, m1n, m2n)) / self.scales
        r = np.concatenate([[1.0 - self.lam_c * m1n - u, m2n - m2], slack[active]])
        return State(np.array(z, dtype=float), t, m1n, m2n, A, B, slack, r)

    def jacobian(self, st: State, active: list[int]) -> np.ndarray:
        """The outer map's Jacobian in ``z`` by implicit differentiation (O(N))."""
        t, u, m2, G = st.tokens, st.z[0], st.z[1], self.G
        with np.errstate(over="ignore"):
            A, B, dA_du, dA_dm2, dB_du, *rest = self.queue.scalars(u, m2)
            dB_dm2 = rest[0] if rest else 0.0  # 0 for one server (a fleet's router may not be)
        fi = np.flatnonzero((t > self.lo) & (t < self.hi))
        b, k1, p = self.b[fi], self.k1[fi], self.p[fi]
        ks = k1 * (self.a[fi] + b * t[fi])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            r = 1.0 / (G * B * k1 * b * b - self.w[fi] * self.curves.d2(t)[fi])
        r[~np.isfinite(r)] = 0.0
        # (with extreme weights an entry may overflow: a non-finite Newton step is refused)
        with np.errstate(over="ignore", invalid="ignore"):
            outputs = np.stack([p * b, 2.0 * p * b * ks, p]) * r
            basis = np.stack([G * b, G * b * ks, np.ones_like(b), self.lam_c * b, b * (A + B * ks)])
            P = outputs @ basis.T  # d(m1, m2, sum p t) / d(coefficient on each basis), negated
            coef = np.zeros((len(_BASIS), 2 + len(active)))
            if G > 0:  # else the tokens do not depend on (u, m2)
                coef[0, 0], coef[1, 0], coef[0, 1], coef[1, 1] = dA_du, dB_du, dA_dm2, dB_dm2
            for col, j in enumerate(active):
                coef[_BASIS.index(self.kinds[j]), 2 + col] = 1.0
            D = -P @ coef  # rows: d m1, d m2, d sum p t
        J = np.zeros((2 + len(active), 2 + len(active)))
        J[0], J[1] = -self.lam_c * D[0], D[1]
        J[0, 0] -= 1.0
        J[1, 1] -= 1.0
        for row, j in enumerate(active):
            J[2 + row] = -self._value_derivative(self.kinds[j], D, st) / self.scales[j]
        return J

    def _value_derivative(self, kind: str, D: np.ndarray, st: State) -> np.ndarray:
        """A constraint value's derivative in ``z`` from those of ``(m1, m2, sum p t)``."""
        if kind == "max_mean_tokens":
            return D[2]
        if kind == "max_utilization":
            return self.lam_c * D[0]
        A_w, B_w = self.queue.derivatives(st.m1, st.m2)
        return A_w * D[0] + 0.5 * B_w * D[1]

    def project(self, z: np.ndarray) -> np.ndarray:
        """``z`` clipped to the brackets of ``u`` and ``m2`` and to ``mu >= 0``."""
        u_lo, u_hi = self.u_bracket()
        out = np.array(z, dtype=float)
        out[0] = min(max(out[0], u_lo), u_hi)
        out[1] = min(max(out[1], self.m2_lo), self.m2_hi)
        out[2:] = np.maximum(out[2:], 0.0)
        return out

    def newton(
        self, z0: np.ndarray, active: list[int], max_iter: int, xtol: float
    ) -> tuple[State, int, bool]:
        """Damped, projected Newton on the outer map; (last state, iterations, converged).

        With no active constraint (the multipliers fixed), a failed Newton
        falls back to the unconstrained method's nested bracketing, which
        converges on the brackets by monotonicity.
        """
        st, it, ok = self._newton(z0, active, max_iter, xtol)
        self.mu[:] = self.fixed
        if ok or active or self.G == 0:  # G = 0: the tokens ignore (u, m2)
            return st, it, ok
        try:
            pt, outer = Reduced.nested(self)
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return st, it, False
        st = self.evaluate(np.array([pt.u, pt.m2]), [], pt.tokens)
        return st, it + outer, True

    def _newton(
        self, z0: np.ndarray, active: list[int], max_iter: int, xtol: float
    ) -> tuple[State, int, bool]:
        self.active = list(active)
        st = self.evaluate(self.project(z0), active)
        for it in range(1, max_iter + 1):
            merit = st.merit()
            if merit <= xtol:
                return st, it, True
            J = self.jacobian(st, active)
            try:
                dz = np.linalg.solve(J, -st.residual)
            except np.linalg.LinAlgError:  # a column of 0 (every type clipped): least squares
                dz = np.linalg.lstsq(J, -st.residual, rcond=None)[0]
            if not np.all(np.isfinite(dz)):
                return st, it, False
            step, trial = 1.0, None
            for _ in range(40):
                z = self.project(st.z + step * dz)
                if np.array_equal(z, st.z):
                    break
                cand = self.evaluate(z, active, st.tokens)
                if cand.merit() <= (1.0 - 1e-4 * step) * merit:
                    trial = cand
                    break
                step *= 0.5
            if trial is None:  # no decrease: converged to rounding, or stuck
                return st, it, merit <= 1e3 * xtol
            st = trial
        return st, max_iter, st.merit() <= xtol


def active_set(
    red: Multipliers, z0: np.ndarray, active: list[int], max_iter: int, xtol: float
) -> tuple[State, list[int], int, bool]:
    """Newton on the outer map, moving constraints in and out until none moves.

    After each Newton solve the most violated constraint (relative slack below
    ``-xtol``) enters, its multiplier started at :func:`entering_multiplier`,
    and an active one whose multiplier is 0 leaves: when Newton converged, only
    if it has slack; when it stalled (the system wants a negative multiplier),
    in any case, and else the active one with the most slack (two constraints
    that bind the same types, one of them loose). Returns
    ``(state, active set, Newton iterations, converged)``.
    """
    active = sorted(active)
    total = 0
    mu = dict(zip(active, np.asarray(z0[2:], dtype=float)))
    for _ in range(3 * len(red.kinds) + 4):
        z = np.concatenate([z0[:2], [mu.get(j, 0.0) for j in active]])
        st, iters, ok = red.newton(z, active, max_iter, xtol)
        total += iters
        st_active = list(active)
        mu = dict(zip(active, st.z[2:]))
        leave = [j for j in active if mu[j] == 0.0 and (st.slack[j] > xtol or not ok)]
        loose = [j for j in active if st.slack[j] > xtol]
        if not ok and not leave and loose:  # stalled: the loosest constraint is not binding
            leave = [max(loose, key=lambda j: st.slack[j])]
        if not ok and not leave and len(active) > 1:
            # stalled with every active constraint violated: two of them may act on
            # the same free types (a token budget and a utilization cap with one type
            # free), so their multipliers are not both determined; drop the one whose
            # removal converges with it satisfied, and go on from that solution
            found = _redundant(red, st, active, max_iter, xtol)
            if found is not None:
                active, st = found
                mu, z0 = dict(zip(active, st.z[2:])), st.z[:2]
                continue
        violated = [j for j in range(len(red.kinds)) if j not in active and st.slack[j] < -xtol]
        if not (leave or violated):
            return st, active, total, ok
        active = sorted(set(active) - set(leave))
        for j in leave:
            mu.pop(j)
        if leave and not ok and active:
            # the stalled multipliers shared the work with the one that left: restart
            # the others at the roots of their slacks
            mu = _reseed(red, st, active)
        if violated:
            j = min(violated, key=lambda j: st.slack[j])
            active = sorted([*active, j])
            red.active = active  # the bracket of u with j active
            z = red.project(np.concatenate([st.z[:2], [mu.get(k, 0.0) for k in active]]))
            mu[j] = entering_multiplier(red, z, st.tokens, active, j)
            st.z[:2] = z[:2]
        z0 = st.z[:2]
    return st, st_active, total, False


def _reseed(red: Multipliers, st: State, active: list[int]) -> dict[int, float]:
    """Multipliers of ``active``, each at the root of its slack with the earlier ones set.

    The start :func:`entering_multiplier` gives an entering constraint, for a whole
    active set: Newton cannot move a multiplier whose free types are all clipped
    (its Jacobian column is 0), which stale multipliers can leave them.
    """
    red.active = list(active)
    z = red.project(np.concatenate([st.z[:2], np.zeros(len(active))]))
    for k in active:
        z[2 + active.index(k)] = entering_multiplier(red, z, st.tokens, active, k)
    return dict(zip(active, z[2:]))


def _redundant(
    red: Multipliers, st: State, active: list[int], max_iter: int, xtol: float
) -> tuple[list[int], State] | None:
    """The active set without a constraint the others enforce, and its solution (or None).

    Newton runs on the active set without ``j`` (each ``j`` in turn), its
    multipliers restarted at the roots of their slacks (:func:`entering_multiplier`:
    the stalled ones may leave every free type clipped, where Newton cannot move
    them); ``j`` is redundant when that converges with ``j``'s slack ``>= -xtol``
    and every multiplier left ``>= 0``.
    """
    for j in active:
        rest = [k for k in active if k != j]
        mu = _reseed(red, st, rest)
        z = np.concatenate([st.z[:2], [mu[k] for k in rest]])
        trial, _, ok = red.newton(z, rest, max_iter, xtol)
        if ok and trial.slack[j] >= -xtol and np.all(trial.z[2:] >= 0):
            return rest, trial
    red.active = list(active)
    return None


def entering_multiplier(
    red: Multipliers, z: np.ndarray, t0: np.ndarray, active: list[int], j: int
) -> float:
    """A start for the multiplier of constraint ``j`` as it enters (``z`` has it): its slack's root.

    With ``(u, m2)`` and the other multipliers held, every type's tokens fall
    as ``mu_j`` grows, so the slack of ``j`` rises, to ``>= 0`` once every
    type sits at ``lo'`` (feasible). Its root (:func:`multiplier_root`, to a
    relative 1e-6) starts Newton where the types that
    move are free (from 0 they may all be clipped at ``hi``, where the
    Jacobian's column is 0).
    """
    z = np.array(z, dtype=float)
    col = 2 + active.index(j)

    def slack(mu_j: float) -> float:
        z[col] = mu_j
        return float(red.evaluate(z, active, t0).slack[j])

    with np.errstate(over="ignore"):
        A = red.queue.scalars(float(z[0]), float(z[1]))[0]
    return multiplier_root(slack, _multiplier_scale(red, j, A), rtol=1e-6)


def multiplier_root(slack, scale: float, rtol: float) -> float:
    """The root in ``mu >= 0`` of an increasing ``slack``, or 0 where ``slack(0) >= 0``.

    The upper end is found by quadrupling ``scale``; the root is sought in
    ``log mu`` down to 1e-300, because the tokens may fall only logarithmically
    in ``mu`` (with ``gamma = 0`` the exponential family's root is
    ``tau log(C / (mu c tau))``), so the slack can change sign within many decades.
    """
    if slack(0.0) >= 0:
        return 0.0
    hi = scale
    for _ in range(600):
        if slack(hi) >= 0:
            break
        hi *= 4.0
    else:
        return hi
    tiny = 1e-300
    if slack(tiny) >= 0:
        return tiny
    x = brentq(lambda x: slack(math.exp(x)), math.log(tiny), math.log(hi), rtol=rtol, xtol=rtol)
    return math.exp(x)


def _multiplier_scale(red: Multipliers, j: int, A: float) -> float:
    """A multiplier of the right order: the largest marginal value at ``lo'`` per unit of ``j``."""
    value = red.w * red.d1_bounds[0]
    kind = red.kinds[j]
    per_unit = {
        "max_mean_tokens": np.ones_like(red.b),
        "max_utilization": red.lam_c * red.b,
        "max_mean_system_time": red.b * max(A, 1e-300),
    }[kind]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(per_unit > 0, value / per_unit, 0.0)
    scale = float(np.max(ratio)) if ratio.size else 0.0
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def coordinate(
    red: Multipliers, z0: np.ndarray, mu0: np.ndarray, max_iter: int, xtol: float, rounds: int = 50
) -> tuple[State, np.ndarray, bool]:
    """The fallback: exact minimization of the dual one multiplier at a time.

    For fixed multipliers the outer map in ``(u, m2)`` alone is the
    unconstrained method's system; the value of constraint ``j`` at its
    solution decreases as ``mu_j`` grows (its derivative is
    ``grad h_j' (Hess L)^-1 grad h_j <= 0``), so ``mu_j`` is the root of its
    slack (:func:`multiplier_root`), or 0 when the slack is positive there. Cyclic
    passes are coordinate descent on the smooth convex dual. Returns the last
    state, the multipliers and whether it converged: a pass left them unchanged
    (to ``xtol``), or its state satisfies the KKT conditions to ``xtol``
    (:func:`kkt_holds`). The second matters where a binding constraint's slack is
    a few ulps of noise around 0 (a utilization cap that pins ``u`` at its
    bracket): its multiplier's root then moves by more than ``xtol`` between
    passes while the point does not.
    """
    mu = np.maximum(np.asarray(mu0, dtype=float), 0.0)
    z = np.array(z0[:2], dtype=float)
    st = None

    def solve_at(m: np.ndarray) -> State:
        nonlocal z
        red.fixed = m.copy()
        out, _, _ = red.newton(z, [], max_iter, xtol)
        z = out.z[:2]
        return out

    for _ in range(rounds):
        before = mu.copy()
        for j in range(len(red.kinds)):

            def slack(v: float, j=j) -> float:
                trial = mu.copy()
                trial[j] = v
                return float(solve_at(trial).slack[j])

            with np.errstate(over="ignore"):
                scale = max(mu[j], _multiplier_scale(red, j, red.queue.scalars(*z)[0]))
            mu[j] = multiplier_root(slack, scale, rtol=4 * np.finfo(float).eps)
        st = solve_at(mu)
        if np.all(np.abs(mu - before) <= xtol * np.maximum(np.abs(mu), 1e-300)) or kkt_holds(
            st, mu, xtol
        ):
            red.fixed[:] = 0.0
            return st, mu, True
    red.fixed[:] = 0.0
    return st, mu, False


def kkt_holds(st: State, mu: np.ndarray, xtol: float) -> bool:
    """Whether ``st`` with multipliers ``mu`` is a KKT point to ``xtol``.

    The tokens already solve the Lagrangian's per-type conditions for ``mu``, so
    what is left is: the outer residuals (``st.merit()``, the slack ``u`` and
    ``m2`` equations) within ``xtol``, every constraint feasible to ``xtol``
    (relative slack ``>= -xtol``), every multiplier ``>= 0``, and a positive
    multiplier only on a constraint that binds (``|slack| <= xtol``).
    """
    slack = st.slack
    return bool(
        st.merit() <= xtol
        and np.all(slack >= -xtol)
        and np.all(mu >= 0)
        and np.all((mu == 0) | (np.abs(slack) <= xtol))
    )
