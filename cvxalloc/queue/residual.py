"""The light-traffic wait of a multi-server queue: the least of ``k`` residual services.

In an M/G/k queue at light load a query that finds every server busy finds them busy
with services that began independently, each at an equilibrium age; it waits for the
first of them to end, the least of ``k`` independent equilibrium residuals ``R_e``
(``P(R_e > u) = E[(S - u)_+] / E[S]``). Its moments are

    E[min] = int_0^inf G(u)^k du,   E[min^2] = 2 int_0^inf u G(u)^k du,
    G(u) = 1 - E[min(S, u)] / E[S].

For ``k = 1`` the mean is the excess ``E[S^2] / (2 E[S])``, the M/G/1 wait of a query
that waits, at any load; for exponential services ``R_e`` is exponential and the least
of ``k`` has mean ``E[S] / k`` and scv 1, the M/M/k wait of a query that waits at light
load. Services more variable than exponential make it shorter than Allen and Cunneen's
``(1 + c_s^2) / 2 E[S] / k`` (the heavy-traffic limit): among ``k`` residuals one is
often short.

The integrals run on composite Gauss-Legendre panels that double in length from
``E[S] / 1024`` to where every component's tail is negligible, split at the constant
services (where ``G`` has kinks); the law is first compressed to :data:`COMPONENTS`
cells (weight and three moments kept per cell, so ``k = 1`` keeps its mean exactly).
"""

from __future__ import annotations

import numpy as np

from .compress import compress
from .service_law import ServiceLaw

__all__ = ["least_residual"]

#: The law is compressed to this many components for the light-traffic integrals.
COMPONENTS = 64
#: Gauss-Legendre nodes per panel; panels double from ``E[S] / 2^FIRST_PANEL``.
NODES, FIRST_PANEL = 12, 10
_X, _W = np.polynomial.legendre.leggauss(NODES)


def least_residual(law: ServiceLaw, k: int) -> tuple[float, float]:
    """Mean and scv of the least of ``k`` independent equilibrium residuals of ``S``.

    Parameters
    ----------
    law : ServiceLaw
        The service law (``E[S] > 0``).
    k : int
        Number of residuals (servers), ``>= 1``.

    Returns
    -------
    mean, scv : float
        ``E[min]`` in the law's seconds and ``Var[min] / E[min]^2``.
    """
    small = compress(law, COMPONENTS)
    m1 = small.moment(1)
    # beyond `end` every component's P(S > u) is below e^-40 (gamma) or 0 (constant)
    end = float(np.max(small.mean + 50.0 * np.where(small.deterministic, 0.0, small.scale)))
    end = max(end, small.mean.max(), m1)
    panels = int(np.ceil(np.log2(end / m1))) + FIRST_PANEL + 1
    edges = np.concatenate([[0.0], m1 * 2.0 ** (np.arange(panels) - FIRST_PANEL)])
    edges = np.unique(np.concatenate([edges, small.atom_points()]))  # kinks of G at atoms
    lo, hi = edges[:-1, None], edges[1:, None]
    u = (0.5 * (hi - lo) * _X[None, :] + 0.5 * (hi + lo)).ravel()
    w = (0.5 * (hi - lo) * _W[None, :]).ravel()
    g = np.clip(1.0 - small.mean_min(u) / m1, 0.0, 1.0) ** k
    mean = float(w @ g)
    second = 2.0 * float(w @ (u * g))
    return mean, second / (mean * mean) - 1.0
