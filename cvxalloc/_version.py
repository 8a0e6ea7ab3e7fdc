"""The package version (one place: the package, the CLI and policy files read it).

Layer: parts.
"""

__version__ = "0.1.0"
