"""The jaxal version (read by ``jaxal.__version__`` and by pyproject.toml)."""

__version__ = "0.1.0"
