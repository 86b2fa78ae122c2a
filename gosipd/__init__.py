"""gosipd: a telephony daemon that runs each SIP/RTP call in its own process."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gosipd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
