"""On-disk cache files of the reference hull, safe when several processes build them at once.

Every file is written aside and renamed into place (readers never see half a file), and an entry
that takes minutes to compute is computed by one process while the others wait on its lock file
(POSIX `flock`; where that is missing, two processes may compute the same entry, and the last
rename wins with identical content).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file of this process, renamed into place
    (`cfmc.runio.atomic_write`)."""
    from cfmc.runio import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text))


@contextlib.contextmanager
def entry_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock tied to `path` (a `.lock` file beside it) for the block."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


__all__ = ["entry_lock", "write_atomic"]
