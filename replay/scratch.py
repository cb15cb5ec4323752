"""A run's own scratch directory for what it spills, and the sweep of dead runs' leftovers.

A replay spills to disk: chDB's external sort of the pings (hundreds of MB on a
large county) and the event sorter. A run killed by SIGKILL or a crash cannot
clean up after itself, so every run sweeps first: each run owns
``ROOT/.lianwatch-run-XXXX/`` and holds an exclusive ``flock`` on
``ROOT/.lianwatch-run-XXXX.lock`` for as long as it lives (the kernel drops the
lock when the process dies, however it dies). A directory whose lock can be taken
belongs to a dead run and is removed; a live run's is left alone.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> with ScratchDir(root) as a:
...     (a.path / "spill.bin").write_bytes(b"x" * 10) and None
...     sorted(p.name.startswith(PREFIX) for p in root.iterdir())  # the dir and its lock
...     sweep(root)  # a live run's directory stays
[True, True]
0
>>> list(root.iterdir())  # and it is gone once the run ends
[]
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["ScratchDir", "sweep", "PREFIX"]

PREFIX = ".lianwatch-run-"
_LOCK = ".lock"


def _try_lock(path: Path) -> int | None:
    """An fd holding the exclusive lock on ``path``, or None when a live run holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def sweep(root: str | Path) -> int:
    """Remove what dead runs left under ``root``; returns how many runs' directories."""
    root = Path(root)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return 0
    removed = 0
    for name in names:
        if not name.startswith(PREFIX):
            continue
        p = root / name
        if name.endswith(_LOCK):
            fd = _try_lock(p)
            if fd is None:
                continue  # a live run
            try:
                shutil.rmtree(root / name[: -len(_LOCK)], ignore_errors=True)
                p.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        elif not (root / (name + _LOCK)).exists():
            # a run makes its lock before its directory and removes it after: a directory
            # without one was left half-removed
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


class ScratchDir:
    """This run's scratch directory under ``root`` (created on enter, removed on exit).

    ``swept``: how many dead runs' directories the sweep on enter removed.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path: Path | None = None
        self.swept = 0
        self._fd: int | None = None

    def __enter__(self) -> "ScratchDir":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        self.swept = sweep(self.root)
        while True:
            fd, lock = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", suffix=_LOCK,
                                        dir=self.root)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # a sweep in another process may have taken and removed it meanwhile
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        self.path = Path(lock[: -len(_LOCK)])
        self.path.mkdir()
        return self.path

    def close(self) -> None:
        if self._fd is None:
            return
        assert self.path is not None
        shutil.rmtree(self.path, ignore_errors=True)
        Path(str(self.path) + _LOCK).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
