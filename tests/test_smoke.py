"""Smoke test of the main job: the example solves optimal and certified."""

import cvxalloc


def test_example_solves_certified(example_optimum):
    assert example_optimum.status == "optimal"
    assert example_optimum.certificate.within(1e-6)
    assert (
        cvxalloc.certify(example_optimum.scenario, example_optimum.tokens).upper_bound
        >= example_optimum.objective
    )
