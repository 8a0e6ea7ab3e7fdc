"""A budget controller replayed on a request log, beside static plans and an oracle.

Layer: workflows. :func:`replay_controller` (:mod:`cvxalloc.controller.replay`)
returns a :class:`ControlReplay` (:mod:`cvxalloc.controller.results`); the
figure is :func:`cvxalloc.plots.control_figure`.

The log's arrival times (rescaled to a target load) go through the scenario's server:
one FIFO server, or a continuous-batching server with its ``max_running``.
Time is cut into windows of ``window`` seconds; budgets change only at window
boundaries, and a query is served with the budgets in force when it arrives.
Every strategy sees the same replay: the same arrivals, and per seed the same
types, the same unit service draws and the same uniforms deciding correctness
(common random numbers), so their differences are measured on equal terms.

Strategies
----------
``static``
    The certified optimum at the whole log's average rate (and average type mix
    and answer lengths), all the time. It knows the log's averages in advance.
``uniform``
    The best single budget for every type (:func:`cvxalloc.baselines.best_uniform`)
    at the same average.
``adaptive``
    At each boundary: the estimated rate plus the backlog term, looked up in the
    policy (:mod:`cvxalloc.policy`) built for the log's average mix and answer
    lengths. No look-ahead beyond the long-run average the static plan also
    uses: the first window runs the static plan. The rate estimate
    (``estimator``) is ``"floor"`` by default: the larger of the rate of the
    window just ended and the long-run average rate (the rate the operator
    planned for; here the log's average). A quiet window does not announce a
    quiet next one: on the Azure code trace silences end in bursts, and budgets
    raised in a silence meet the burst with a long queue. So the controller only
    ever cuts budgets below the static plan's (busy windows, or a backlog), never
    raises them above. ``"cautious"``: the larger of the last window's rate and
    the average of everything seen so far (no prior); ``"last"``: the last
    window's rate alone. Both are measured in docs/validation.md (g).
``adaptive-mix`` (when the log has types or token counts)
    As ``adaptive``, and also the type mix and answer lengths of the window just
    ended (of its queries finished by the boundary), re-solved at each boundary
    (certified, warm-started).
``oracle``
    Each window's true rate (and mix and answer lengths), known in advance, no
    backlog term.

The backlog rule
----------------
At a boundary the server knows how many queries ``Q`` are in the system. They
are served in the coming window on top of its arrivals, so the controller plans
for the effective rate ``rate_hat + Q / window``: the queue's queries spread over
the window as extra arrivals. The steady-state wait formula then prices the load
the server actually faces (new work plus carried-over work), and the term
vanishes with an empty queue. Rates above the policy's range are held at its top
(the budgets that are stable closest to saturation).

Service of a query
------------------
``s_i(t) X`` with ``X`` of mean 1 and squared coefficient of variation ``k_i``
(gamma, as :func:`cvxalloc.simulate.simulate`); with a token column, plus
``b_i x`` for the request's own answer tokens ``x`` (its generated tokens, at
the model's seconds per token). Plans then use the scenario with ``base + b E[x]``
and ``variance + b^2 Var[x]`` from what each strategy knows.

Figures per strategy (means over seeds with Student-t intervals over seeds):
realized weighted accuracy (``w_i`` per correct answer), mean and p95/p99 system
time, realized utility ``accuracy - gamma * mean system time``, and the paired
difference of utility against ``static``.
"""

from __future__ import annotations

from .replay import ESTIMATORS, STRATEGIES, plan_scenario, replay_controller
from .results import ControlReplay, StrategyStats

__all__ = [
    "ControlReplay",
    "StrategyStats",
    "replay_controller",
    "plan_scenario",
    "STRATEGIES",
    "ESTIMATORS",
]
