"""Atomic file writes: a temporary file in the target's directory, fsync, then ``os.replace``.

A reader never sees a half-written file under the final name: either the old file (or none) or
the complete new one. Temporary files are named ``.<final name>.<random>.tmp`` so directory
scanners (e.g. :func:`fconv.checkpoint.latest_step`) can ignore them; they are removed if the
write fails.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from typing import Any

__all__ = ["TMP_SUFFIX", "write_bytes_atomic", "save_json_atomic"]

#: Suffix of the temporary files created while writing; never a complete file.
TMP_SUFFIX = ".tmp"


def _fsync_dir(directory: str) -> None:
    """Flush a directory entry to disk where the platform allows it (POSIX only)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(directory: str, name: str) -> tuple[int, str]:
    """Creates ``directory/.name.<random>.tmp`` exclusively, with the permissions a plain
    ``open(path, "wb")`` would give (``0o666`` less the umask; ``tempfile.mkstemp`` would make
    every written file private, 0600); returns ``(fd, path)``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}{TMP_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique temporary file for {name!r} in {directory!r}")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, which is flushed and fsync-ed and
    then renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows when both
    names are on one file system). On any failure the temporary file is removed and ``path`` is
    left as it was. The file gets the permissions ``open(path, "wb")`` would give it: an
    existing file's own, a new file 0666 less the process's umask.

    Args:
        path: Destination file. Its directory must exist.
        data: The complete file contents (``bytes``, ``bytearray`` or ``memoryview``).

    Raises:
        TypeError: If ``data`` is not bytes-like.
        FileNotFoundError: If the directory of ``path`` does not exist.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like (bytes, bytearray, memoryview), got {type(data)}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} does not exist")
    fd, tmp = _create_temp(directory, os.path.basename(path))
    try:
        try:  # an existing file keeps its permissions, as open(path, "wb") would
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def save_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Serialise ``obj`` as JSON and write it to ``path`` atomically.

    The object is encoded completely before anything touches the disk, so an unserialisable
    object leaves no file behind.

    Args:
        path: Destination file. Its directory must exist.
        obj: A JSON-serialisable object (dicts, lists, strings, numbers, bools, None).
        indent: Indentation passed to :func:`json.dumps`; default 2. ``None`` for compact output.

    Raises:
        TypeError: If ``obj`` is not JSON-serialisable (from :func:`json.dumps`).
        FileNotFoundError: If the directory of ``path`` does not exist.
    """
    text = json.dumps(obj, indent=indent, sort_keys=True, allow_nan=True)
    write_bytes_atomic(path, (text + "\n").encode("utf-8"))
