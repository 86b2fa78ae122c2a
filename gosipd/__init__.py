"""gosipd: a telephony daemon that runs each SIP/RTP call in its own process.

Apps are written against ``gosipd.Call`` (see ``gosipd.call``); it is imported
lazily so that ``gosipctl`` and the supervisor stay light.
"""

from typing import TYPE_CHECKING, Any

from gosipd._version import __version__

if TYPE_CHECKING:
    from gosipd.call import Call, CallError

__all__ = ["Call", "CallError", "__version__"]


def __getattr__(name: str) -> Any:
    """``gosipd.Call`` for apps (``async def app(call: gosipd.Call)``), imported on first use."""
    if name in ("Call", "CallError"):
        from gosipd import call

        return getattr(call, name)
    raise AttributeError(f"module 'gosipd' has no attribute {name!r}")
