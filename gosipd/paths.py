"""Two paths another user on the host would like to choose for us: where the daemon keeps
its sockets (the runtime directory), and where it imports code from.

The runtime directory holds the control socket and every call's socket and state file:
whoever can write to it can stand in for the supervisor or a call. So it must be a real
directory (not a symlink), owned by the daemon's uid, and writable by nobody else; its
parent must be ours or root's, and if others may write to it, sticky (so nobody else can
rename our directory away and put theirs in its place). ``private_dir`` makes one with
``os.mkdir`` (which never follows a symlink at the last component) or refuses one that
is not safe, with a ``RuntimeDirError`` that says which path and what is wrong.

``python -m`` puts the working directory first on ``sys.path``: started from a directory
another user can write to, an app name (or ``gosipd`` itself) would import their module.
The launchers pass ``-P`` (the systemd unit, the upgrade re-exec, ``make run``);
``drop_cwd_from_sys_path`` removes what is left once we run, and ``import_user_module``
imports a user's app with neither ``''`` nor the working directory on the path.
"""

from __future__ import annotations

import importlib
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

from gosipd.config import ConfigError

__all__ = [
    "RuntimeDirError",
    "check_socket_dir",
    "drop_cwd_from_sys_path",
    "import_user_module",
    "private_dir",
]

#: The mode a runtime directory is created with: the service group may read it (and so
#: reach the 0660 control socket), nobody else may even list it.
PRIVATE_MODE = 0o750
#: Bits that let someone else put a file of theirs into a directory.
_FOREIGN_WRITE = stat.S_IWGRP | stat.S_IWOTH


class RuntimeDirError(ConfigError):
    """A runtime (or socket) directory that another user could tamper with."""


def private_dir(path: Path, *, what: str = "runtime directory") -> Path:
    """``path`` as a directory only the daemon's uid can write to: made (mode 0750) if
    missing, checked if present. Returns it absolute; raises ``RuntimeDirError``."""
    path = Path(os.path.abspath(path))
    _check_parent(path, what)
    try:
        os.mkdir(path, PRIVATE_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RuntimeDirError(f"{what} {path}: cannot create it: {exc.strerror}") from None
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise RuntimeDirError(f"{what} {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise RuntimeDirError(
            f"{what} {path} is a symlink (to {os.readlink(path)}); it must be a real directory"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(f"{what} {path} is not a directory")
    uid = os.geteuid()
    if info.st_uid != uid:
        raise RuntimeDirError(
            f"{what} {path} is owned by uid {info.st_uid}, not by us (uid {uid}); "
            f"it must be ours: remove it, or chown it to uid {uid}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & _FOREIGN_WRITE:
        raise RuntimeDirError(
            f"{what} {path} is writable by {_who(mode)} (mode {mode:04o}); "
            f"only its owner may write to it: chmod {PRIVATE_MODE:04o} {path}"
        )
    return path


def check_socket_dir(path: Path) -> None:
    """The directory of a configured control socket outside the runtime directory: made
    private if missing; if it exists, ours or root's, and shared only if sticky."""
    path = Path(os.path.abspath(path))
    if not os.path.lexists(path):
        private_dir(path, what="control socket directory")
        return
    _check_shared(path, "control socket directory")


def _check_parent(path: Path, what: str) -> None:
    parent = path.parent
    if not parent.exists():
        try:
            os.makedirs(parent, PRIVATE_MODE, exist_ok=True)
        except OSError as exc:
            raise RuntimeDirError(
                f"{what} {path}: cannot create {parent}: {exc.strerror}"
            ) from None
    _check_shared(parent, f"{what} {path}: its parent")


def _check_shared(path: Path, what: str) -> None:
    """A directory we keep things in but need not own: ours or root's (symlinks followed,
    /var/run is one), and if others may write to it, sticky."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise RuntimeDirError(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(f"{what} {path} is not a directory")
    if info.st_uid not in (os.geteuid(), 0):
        raise RuntimeDirError(
            f"{what} {path} is owned by uid {info.st_uid}, neither us (uid {os.geteuid()}) nor root"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & _FOREIGN_WRITE and not mode & stat.S_ISVTX:
        raise RuntimeDirError(
            f"{what} {path} is writable by {_who(mode)} and not sticky (mode {mode:04o}): "
            "someone else could replace what we keep in it"
        )


def _who(mode: int) -> str:
    return " and ".join(
        name
        for bit, name in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "everyone"))
        if mode & bit
    )


def drop_cwd_from_sys_path() -> None:
    """Remove ``''``, ``'.'`` and the working directory from ``sys.path`` (what ``python
    -m`` and ``-c`` put first), so no later import can come from where we were started."""
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the directory was removed under us
        cwd = None
    kept = []
    for entry in sys.path:
        if entry in ("", "."):
            continue
        if cwd is not None and os.path.realpath(entry) == cwd:
            continue
        kept.append(entry)
    sys.path[:] = kept


def import_user_module(name: str) -> ModuleType:
    """Import a user's app module by its absolute name, never from the working directory."""
    if not name or name.startswith(".") or not all(p.isidentifier() for p in name.split(".")):
        raise ImportError(f"{name!r} is not an absolute module name", name=name)
    drop_cwd_from_sys_path()
    return importlib.import_module(name)
