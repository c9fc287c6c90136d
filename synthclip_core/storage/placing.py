"""Placing a file at its final name without ever replacing one that is there: the one mechanism
under the commit rule (``store.RunStore.commit``).

Locally the bytes go to a hidden temporary file (``.NAME.<hex>.tmp``: no data suffix, so globs
such as ``*.tar`` skip it) that is hard-linked into place, which is atomic and fails if the name
exists; where a file system refuses hard links, ``renameat2(RENAME_NOREPLACE)``; where that is
refused too, an exclusive create. On an object store: one conditional put (``If-None-Match: *``).
"""

from __future__ import annotations

import errno
import os
import posixpath
import random
import re
import time
import uuid

from ..errors import StorageError

_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")


def temporary_name(path: str) -> str:
    """A hidden name beside ``path`` that no reader or glob picks up."""
    parent, name = posixpath.split(path)
    return posixpath.join(parent, f".{name}.{uuid.uuid4().hex}.tmp")


def is_temporary(path: str) -> bool:
    return _TEMPORARY.fullmatch(posixpath.basename(path)) is not None


def place_remote(fs, path: str, data: bytes, attempts: int = 8) -> bool:
    """One conditional put; False if the key exists (then the caller compares its bytes).

    Three answers need more than s3fs gives: 412 to a retried put whose first try was applied and
    its answer lost (the key exists: False); 409 ConditionalRequestConflict, another conditional
    write on the key in flight, which AWS asks clients to retry (retried with backoff); and any
    other error after which the key exists, which is how a lost answer to a multipart complete
    (objects of 100 MiB and up) ends: the retried complete gets 412 or NoSuchUpload, and so does
    s3fs's abort (False).
    """
    for attempt in range(attempts):
        try:
            fs.pipe_file(path, data, mode="create")
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if "ConditionalRequestConflict" in str(exc):
                time.sleep(min(0.05 * 2**attempt, 5) * random.uniform(0.5, 1.5))
                continue
            if "PreconditionFailed" in str(exc) or "412" in str(exc) or _exists(fs, path):
                return False
            raise
    raise StorageError(f"cannot place {fs.unstrip_protocol(path)}: the store answered 409 ConditionalRequestConflict "
                       f"{attempts} times (other writers keep writing this key)")


def _exists(fs, path: str) -> bool:
    try:
        return fs.exists(path)
    except OSError:
        return False


def place_local(path: str, data: bytes) -> bool:
    """Write a hidden temporary and link it into place; False if a file is there."""
    tmp = temporary_name(path)
    try:  # from the first byte: a write that fails (a full disk) leaves no temporary behind
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:  # a filesystem without hard links (some FUSE mounts)
            if exc.errno not in _NO_LINKS:
                raise
        return _move_no_replace(tmp, path, data)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)
_RENAME_NOREPLACE = 1  # linux/fs.h


def _move_no_replace(tmp: str, path: str, data: bytes) -> bool:
    """Where hard links are refused: move ``tmp`` to ``path`` unless a file is there, atomically
    (Linux ``renameat2(RENAME_NOREPLACE)``); where that is refused too, create ``path``
    exclusively and write it (exclusive, not atomic: a placed file that a kill cut short is
    unreadable, and a writer that finds it replaces it, see :meth:`RunStore.commit`)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "renameat2"):
        at_cwd = -100
        if libc.renameat2(at_cwd, os.fsencode(tmp), at_cwd, os.fsencode(path), _RENAME_NOREPLACE) == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            return False
        if code not in (errno.EINVAL, *_NO_LINKS):
            raise OSError(code, os.strerror(code), path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True
