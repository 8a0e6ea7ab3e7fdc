"""The system time of a query that waits with some probability: ``T = S`` or ``S + W``.

Every approximation of the tail module for a queue with waiting (bursty FIFO gaps,
the batching server's admission wait) has this form: with probability ``1 - sigma``
a query is served at once (``T = S``, the exact service law, atoms included), else
it waits ``W > 0`` first. :class:`MaybeWait` evaluates ``P(T > x)`` and the density
of its continuous part for any such law, from ``S``'s own law and the transform of
``S + W`` (inverted numerically, with the inversion's error).

The inversion aims at :data:`TOL` in probability, not the ``1e-9`` of the exact M/G/1
method: these laws are approximations whose error against simulation is percents
(docs/validation.md (t)), and at N = 10^4 task types the tighter target took about
twice the time (164-276 ms against 71-91 ms for the percentiles of bursty FIFO gaps),
for percentiles that moved by at most 1.7e-7 relative (1e-5 with constant services,
whose kinks the inversion resolves more slowly; tests/test_tail.py).
"""

from __future__ import annotations

import numpy as np

from .inversion import invert
from .service_law import ServiceLaw

__all__ = ["MaybeWait", "TOL"]

#: Target absolute error of ``P(T > x)`` in the numerical inversion.
TOL = 1e-6


class MaybeWait:
    """Base of ``T = S`` with probability ``1 - sigma``, else ``S + W`` (``W > 0``).

    A subclass sets ``sigma``, ``service`` (the exact law of ``S``) and defines
    ``_transform(z)``: the Laplace transforms of ``P(S + W > x)`` and of its density;
    ``tol`` (default :data:`TOL`) is the inversion's target error.
    """

    sigma: float
    service: ServiceLaw
    tol: float = TOL

    def _transform(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, x):
        """``P(T > x)``, the density of its continuous part and the inversion's error."""
        x = np.atleast_1d(np.asarray(x, dtype=float))
        r = self.sigma
        ccdf = (1 - r) * self.service.ccdf(x)
        pdf = (1 - r) * self.service.pdf(x)
        err = np.zeros_like(x)
        if r > 0:
            pos = x > 0
            inv = invert(self._transform, x[pos], tol=self.tol)
            ccdf[pos] += r * inv.values[0]
            pdf[pos] += r * inv.values[1]
            err[pos] = r * inv.error[0]
            ccdf[~pos] += r
        return np.clip(ccdf, 0.0, 1.0), np.maximum(pdf, 0.0), err

    def jump(self, x) -> np.ndarray:
        """``P(T = x)``: the atoms of ``S`` met with no wait."""
        return (1 - self.sigma) * self.service.atoms(x)

    def atom_points(self) -> np.ndarray:
        """Where the distribution of ``T`` jumps."""
        return self.service.atom_points()
