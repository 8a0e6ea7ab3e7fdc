"""The option validators every solver uses: accepted values and the error for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from cvxalloc import _options as opt
from cvxalloc.errors import CvxallocError, OptionError


def test_accepted_values():
    assert opt.positive("tol", 1e-9) == 1e-9
    assert opt.positive("tol", np.float32(0.5)) == 0.5
    assert opt.nonnegative("rtol", 0) == 0.0
    assert opt.count("max_iter", 1e4) == 10_000 and isinstance(opt.count("n", np.int64(3)), int)
    assert opt.flag("shrink", np.bool_(False)) is False
    assert opt.choice("variant", None, ("gradient", None)) is None
    assert opt.mapping("solver_options", None) == {}
    assert opt.mapping("solver_options", {"max_iter": 5}) == {"max_iter": 5}


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (lambda v: opt.positive("tol", v), 0),
        (lambda v: opt.positive("tol", v), float("nan")),
        (lambda v: opt.positive("tol", v), float("inf")),
        (lambda v: opt.positive("tol", v), "1e-9"),
        (lambda v: opt.positive("tol", v), True),
        (lambda v: opt.nonnegative("tol", v), -1e-300),
        (lambda v: opt.count("max_iter", v), 2.5),
        (lambda v: opt.count("max_iter", v), -1),
        (lambda v: opt.count("max_iter", v), True),
        (lambda v: opt.count("max_iter", v), float("inf")),
        (lambda v: opt.flag("shrink", v), 1),
        (lambda v: opt.flag("shrink", v), "yes"),
        (lambda v: opt.choice("variant", v, ("a", "b")), "c"),
        (lambda v: opt.mapping("solver_options", v), [1, 2]),
    ],
)
def test_rejected_values_name_the_option(check, value):
    with pytest.raises(OptionError) as info:
        check(value)
    assert "option " in str(info.value) and repr(value) in str(info.value)
    # one error class for the CLI (exit 2) that is still a ValueError for API callers
    assert isinstance(info.value, CvxallocError) and isinstance(info.value, ValueError)
