"""One `mlipkit learn` per run folder: two loops in one folder would train
and label over each other.

:func:`run_lock` holds ``RUN/.lock`` with POSIX ``flock``, which the system
drops when its process ends, even by kill -9, so a lock never outlives a
run. Without ``flock`` (not POSIX, or a file system that refuses it) runs
go on unlocked, with a warning.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

from mlipkit.errors import RunInProgress

log = logging.getLogger(__name__)


@contextmanager
def run_lock(folder: Path):
    """Hold ``folder/.lock`` exclusively while the body runs; a second loop
    in the same folder raises :class:`RunInProgress` naming the first one's
    pid."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        log.warning("no run lock on this platform: do not start a second loop in %s", folder)
        yield
        return
    with open(folder / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip()
            raise RunInProgress(f"another mlipkit learn (pid {pid or '?'}) is running in "
                                f"{folder}; wait for it to end or stop it, then run the "
                                "command again") from None
        except OSError as exc:  # e.g. a network file system without flock
            log.warning("cannot lock %s (%s): do not start a second loop there", folder, exc)
            locked = False
        else:
            locked = True
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
        try:
            yield
        finally:
            if locked:
                fcntl.flock(f, fcntl.LOCK_UN)


def holder(folder: Path) -> str | None:
    """The pid of the loop that holds ``folder``'s lock now ("?" if it is not
    written yet); None when no loop does, or where there is no ``flock``."""
    path = folder / ".lock"
    try:
        import fcntl
    except ImportError:
        return None
    if not path.exists():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "?"
        except OSError:
            return None
        fcntl.flock(f, fcntl.LOCK_UN)
    return None
