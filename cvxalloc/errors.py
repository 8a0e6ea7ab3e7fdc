"""Exceptions raised by cvxalloc.

Layer: parts.

Every error a user can cause is a :class:`CvxallocError`; its message names the
field that is wrong and what to do about it. The command-line interface turns
these into one line on stderr and exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CvxallocError",
    "ScenarioError",
    "UnstableError",
    "SolverError",
    "MissingDependencyError",
    "OptionError",
    "did_you_mean",
]


class CvxallocError(ValueError):
    """Base class of every error cvxalloc raises on purpose."""


class ScenarioError(CvxallocError):
    """A scenario (file, dict or arrays) is invalid; the message names the field."""


class UnstableError(ScenarioError):
    """The queue cannot be stable, or no optimum exists, for this scenario."""


class SolverError(CvxallocError):
    """A solver could not produce any usable allocation."""


class MissingDependencyError(CvxallocError):
    """An optional dependency needed by the requested feature is not installed."""


class OptionError(CvxallocError):
    """An unknown method, or an option the chosen method does not take."""


def did_you_mean(key: object, allowed: Iterable[str], listed: Iterable[str] | None = None) -> str:
    """The tail of an "unknown key" message: the closest allowed key, or the list of them.

    Parameters
    ----------
    key : object
        What was given.
    allowed : iterable of str
        The keys accepted (searched for a close match).
    listed : iterable of str, optional
        What to list when nothing is close (default: ``allowed``, in its order).

    Examples
    --------
    >>> did_you_mean("arival_rate", ["arrival_rate", "latency_weight"])
    '; did you mean "arrival_rate"?'
    >>> did_you_mean("zzz", ["b", "a"])
    '; allowed: b, a'
    """
    allowed = list(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        return f'; did you mean "{close[0]}"?'
    return "; allowed: " + ", ".join(allowed if listed is None else listed)
