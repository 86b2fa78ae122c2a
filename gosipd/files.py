"""The files directory: where every prompt a call plays and every recording it makes lives.

A play or record path comes from a control client or a dial's app spec, and
both are untrusted (gosipd listens on the open internet). So a path is a name
*relative to* ``[files] directory`` and must stay inside it:

- an absolute path, a ``..`` component or a NUL byte is refused before the
  file system is touched, so the answer says nothing about what exists
  outside the directory;
- the path is walked one component at a time from a descriptor of the
  directory, each opened with ``O_NOFOLLOW``: a symbolic link anywhere in it
  is refused (whatever it points at), and a rename racing the walk cannot
  lead outside; the parent reached is checked to resolve inside the directory;
- nothing is created on the way: a missing parent directory is an error;
- a recording is created with ``O_EXCL`` and mode 0640 (an existing file,
  or a symlink, is never truncated or followed);
- a prompt must be a regular file (no FIFO to block on, no device) of at
  most the limit the caller gives (``audio.MAX_FILE_BYTES``).

``ForbiddenPath`` is the refusal of a path that would leave the directory;
``FileError`` is a usable path naming an unusable file (missing, exists...).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = [
    "MAX_NAME_LENGTH",
    "RECORDING_MODE",
    "FileError",
    "ForbiddenPath",
    "check_name",
    "create_recording",
    "read_prompt",
]

#: The longest path a request may name (PATH_MAX is 4096 on Linux).
MAX_NAME_LENGTH = 4096
#: Recordings are readable by the daemon's group (the operators), not by everyone.
RECORDING_MODE = 0o640

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileError(Exception):
    """A path inside the files directory that cannot be used (missing, exists...)."""


class ForbiddenPath(FileError):
    """A path that is not a plain relative path inside the files directory."""


def check_name(name: str) -> list[str]:
    """The components of ``name``, or ``ForbiddenPath``, without touching any file (so a
    dial naming a file can be refused before its call starts)."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ForbiddenPath(f"{name[:64]!r}: a path of 1 to {MAX_NAME_LENGTH} characters is needed")
    if "\x00" in name:
        raise ForbiddenPath(f"{name!r}: a path may not contain NUL")
    if name.startswith("/"):
        raise ForbiddenPath(
            f"{name!r}: absolute paths are refused; name a file relative to the files directory"
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ForbiddenPath(f"{name!r}: '..' is refused; name a file inside the files directory")
    if not parts:
        raise ForbiddenPath(f"{name!r}: names no file")
    return parts


def _open_parent(directory: Path, name: str, parts: list[str]) -> int:
    """A descriptor of the directory holding ``parts[-1]``, reached without following links."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileError(
            f"the files directory {str(directory)!r} is unusable ({exc.strerror})"
        ) from None
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _component_error(fd, name, part, exc) from None
            os.close(fd)
            fd = child
        _check_inside(directory, name, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_inside(directory: Path, name: str, fd: int) -> None:
    """The parent reached resolves inside the directory (belt and braces after the walk)."""
    try:
        parent = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return  # no /proc: the O_NOFOLLOW walk is the guarantee
    if not parent.is_relative_to(directory.resolve()):
        raise ForbiddenPath(f"{name!r}: not inside the files directory")


def _component_error(parent_fd: int, name: str, part: str, exc: OSError) -> FileError:
    try:
        is_link = stat.S_ISLNK(os.lstat(part, dir_fd=parent_fd).st_mode)
    except OSError:
        is_link = False
    if is_link or exc.errno == errno.ELOOP:
        return ForbiddenPath(f"{name!r}: {part!r} is a symbolic link; links are not followed")
    if exc.errno == errno.ENOENT:
        return FileError(f"{name!r}: no directory {part!r} (directories are not created)")
    if exc.errno == errno.ENOTDIR:
        return FileError(f"{name!r}: {part!r} is not a directory")
    return FileError(f"{name!r}: cannot open {part!r} ({exc.strerror})")


def read_prompt(directory: Path, name: str, limit: int) -> bytes:
    """The bytes of the regular file ``name`` inside ``directory`` (at most ``limit``)."""
    parts = check_name(name)
    parent = _open_parent(directory, name, parts)
    try:
        try:
            fd = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent
            )
        except OSError as exc:
            raise _leaf_error(name, exc) from None
    finally:
        os.close(parent)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileError(f"{name!r}: is a directory, not a WAV file")
        if not stat.S_ISREG(info.st_mode):
            raise FileError(f"{name!r}: not a regular file")
        if info.st_size > limit:
            raise FileError(
                f"{name!r}: {info.st_size} bytes is more than the {limit} a prompt may have"
            )
        data = file.read(limit + 1)
    if len(data) > limit:
        raise FileError(f"{name!r}: more than the {limit} bytes a prompt may have")
    return data


def create_recording(directory: Path, name: str) -> int:
    """A new file ``name`` inside ``directory``, open for writing (``O_EXCL``, mode 0640)."""
    parts = check_name(name)
    parent = _open_parent(directory, name, parts)
    try:
        return os.open(
            parts[-1],
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            RECORDING_MODE,
            dir_fd=parent,
        )
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileError(
                f"{name!r}: already exists; a recording never replaces a file"
            ) from None
        raise _leaf_error(name, exc) from None
    finally:
        os.close(parent)


def _leaf_error(name: str, exc: OSError) -> FileError:
    if exc.errno == errno.ELOOP:
        return ForbiddenPath(f"{name!r}: is a symbolic link; links are not followed")
    if exc.errno == errno.ENOENT:
        return FileError(f"{name!r}: no such file")
    if exc.errno == errno.EISDIR:
        return FileError(f"{name!r}: is a directory")
    return FileError(f"{name!r}: cannot open it ({exc.strerror})")
