"""The one place cmproxy's version is written (pyproject.toml reads it through hatch)."""

__version__ = "0.1.0"
