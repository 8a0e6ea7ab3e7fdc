"""CVXPY is an optional heavy dependency of the conic paths: nothing else may import it.

Each check runs in a fresh interpreter (the test session itself has imported
CVXPY long before), and fails naming who imported it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: Fails with the cvxalloc frames that triggered the import of cvxpy, if any.
_GUARD = textwrap.dedent(
    """
    import sys, traceback

    class _Guard:
        def find_spec(self, name, path=None, target=None):
            if name == "cvxpy" or name.startswith("cvxpy."):
                frames = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                          if "cvxalloc" in f.filename]
                raise ImportError("cvxpy imported from " + " <- ".join(reversed(frames)))
            return None

    sys.meta_path.insert(0, _Guard())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _GUARD + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check(code: str) -> None:
    proc = _run(textwrap.dedent(code) + "\nassert 'cvxpy' not in sys.modules\n")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_import_cvxalloc_does_not_import_cvxpy():
    _check("import cvxalloc")


def test_cli_solve_does_not_import_cvxpy():
    _check(
        """
        import contextlib, io
        import cvxalloc.cli
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = cvxalloc.cli.main(["solve", "--json"])
        assert code == 0, code
        assert '"status": "optimal"' in out.getvalue()
        # the registry imports the solver that was asked for, no other
        assert "cvxalloc.solvers.aggregate" in sys.modules
        assert "cvxalloc.solvers.conic" not in sys.modules
        assert "cvxalloc.solvers.mixed_integer" not in sys.modules
        """
    )


def test_first_order_methods_and_a_default_sweep_do_not_import_cvxpy():
    _check(
        """
        import cvxalloc
        from cvxalloc.sweep import sweep_latency_weight
        sc = cvxalloc.example_scenario()
        for method in ("aggregate", "fixed-point", "gradient"):
            res = cvxalloc.solve(sc, method=method)
            assert res.certificate.gap < float("inf"), method
        sw = sweep_latency_weight(sc, [1e-4, 1e-3], progress=False)
        assert sw.method == "aggregate" and list(sw.status) == ["optimal", "optimal"]
        """
    )


def test_every_help_text_without_cvxpy():
    _check(
        """
        import contextlib, io
        from cvxalloc.cli import SUBCOMMANDS, main
        for name in SUBCOMMANDS:
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    main([name, "--help"])
                except SystemExit as exc:
                    assert exc.code == 0, (name, exc.code)
        """
    )


def test_the_guard_catches_an_import():
    """The check above can fail: the conic method does import CVXPY, and the guard says who."""
    proc = _run(
        """
        import cvxalloc
        cvxalloc.solve(cvxalloc.example_scenario(), method="conic")
        """
    )
    assert proc.returncode != 0
    assert "cvxpy imported from" in proc.stderr and "conic.py" in proc.stderr


def test_import_and_help_do_not_import_scipy_special():
    # scipy.special is about 0.1 s of start-up (with SciPy's array-API layer and
    # numpy.f2py); cvxalloc reads it through cvxalloc._lazy.special, on first use
    proc = _run(
        """
        import contextlib, io
        import cvxalloc, cvxalloc.cli
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cvxalloc.cli.main(["--help"])
            except SystemExit:
                pass
        loaded = sorted(m for m in sys.modules if m.startswith("scipy.special"))
        assert not loaded, loaded
        from cvxalloc._lazy import special
        assert special.ndtri(0.5) == 0.0 and "scipy.special" in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
