"""The solver methods, one module each (reached through cvxalloc.solve).

Layer: solvers.
"""
