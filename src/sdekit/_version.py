"""The package's version, in one place (read by ``sdekit.__version__`` and by the distributed version check)."""

__version__ = "0.1.0"
