"""Exceptions raised by cvxalloc.

Every error a user can cause is a :class:`CvxallocError`; its message names the
field that is wrong and what to do about it. The command-line interface turns
these into one line on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "CvxallocError",
    "ScenarioError",
    "UnstableError",
    "SolverError",
    "MissingDependencyError",
    "OptionError",
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
