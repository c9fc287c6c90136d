"""The package's version, where every record and event that names it reads it."""

__version__ = "0.1.0"
