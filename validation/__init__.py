"""The paper's experiments, reproduced: ``python -m validation.run --out validation/output``.

Each module is one experiment with ``run(out_dir, quick=False) -> Section``: it
writes its PNG figure(s) into ``out_dir`` and returns the markdown text and the
numbers it established. :mod:`validation.run` runs them all and writes
``report.md`` and ``results.json`` beside the figures.
"""
