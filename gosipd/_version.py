"""The version every gosipd process reports (a call keeps the one it started with)."""

__version__ = "0.1.0"
