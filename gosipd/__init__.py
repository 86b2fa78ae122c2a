"""gosipd: a telephony daemon that runs each SIP/RTP call in its own process."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("gosipd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from gosipd.call import Call, CallError

__all__ = ["Call", "CallError", "__version__"]


def __getattr__(name: str) -> Any:
    """``gosipd.Call`` for apps (``async def app(call: gosipd.Call)``), imported on first
    use so that ``import gosipd`` stays light and gosipd.call can import __version__."""
    if name in ("Call", "CallError"):
        from gosipd import call

        return getattr(call, name)
    raise AttributeError(f"module 'gosipd' has no attribute {name!r}")
