"""The gosipd supervisor: control socket, fork per call, drain, upgrade, re-adoption."""
