"""One run per run directory: a lock file holding the owner's pid and host.

A second run into a held directory is refused (naming the owner); a lock whose process is gone
(killed, crashed) is stale and taken over. `guarded_run` wraps the run workflow: validate the
directory, lock it, remove temporary files of interrupted writes, run, release.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cfmc import validate

LOCK = ".cfmc.lock"
logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


class RunDirectoryLocked(FileExistsError):
    """Another live process is writing this run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(lock: Path) -> dict[str, Any] | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def acquire(path: str | Path) -> Path:
    """Create `path/.cfmc.lock` for this process; refuse while a live process holds it, take it
    over when its owner is gone (same host, dead pid) or the file is unreadable."""
    lock = Path(path) / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner is not None and owner.get("host") != me["host"]:
                raise RunDirectoryLocked(
                    f"run directory {path} is locked by process {owner.get('pid')} on "
                    f"{owner.get('host')} ({lock}); remove the lock if that run is over"
                ) from None
            pid = int(owner.get("pid", -1)) if owner else -1
            if pid > 0 and pid != me["pid"] and _alive(pid):
                raise RunDirectoryLocked(
                    f"run directory {path} is in use by process {pid} (lock {lock}); wait for "
                    "it to finish or choose another --out"
                ) from None
            if pid == me["pid"]:
                raise RunDirectoryLocked(
                    f"run directory {path} is already in use by this process (lock {lock})"
                ) from None
            logger.warning("taking over the stale lock of process %s in %s", pid, path)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return lock
    raise RunDirectoryLocked(f"could not lock run directory {path} (lock {lock} keeps changing)")


def release(lock: Path) -> None:
    """Remove the lock if this process still owns it."""
    owner = _owner(lock)
    if owner is not None and owner.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[Path]:
    """Hold the run directory's lock for the duration of the block."""
    lock = acquire(path)
    try:
        yield lock
    finally:
        release(lock)


def remove_temporaries(path: str | Path) -> list[Path]:
    """Delete the `.NAME.PID.tmp` files an interrupted atomic write left (under the lock no
    other process is writing)."""
    path = Path(path)
    gone = [p for p in [*path.glob(".*.tmp"), *path.glob("cif/.*.tmp")] if p.is_file()]
    for p in gone:
        p.unlink()
    return gone


def guarded_run(fn: F) -> F:
    """Wrap a run function taking `out` (and `options`, `posterior`): check the numbers the
    run takes and the directory, then run it holding the directory's lock."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        options, posterior = bound.arguments.get("options"), bound.arguments.get("posterior")
        if options is not None and posterior is not None:
            validate.run_numbers(getattr(posterior, "temperature", 1.0), options.seed)
        out = validate.output_dir(bound.arguments["out"])
        with locked(out):
            remove_temporaries(out)
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
