"""A family's persisted state in one Faust table (the worker's :class:`StateBackend`).

Keys are raw bytes: ``b"{partition}\\x1f{detector}\\x1f{subject}"`` → pickled
state, and ``b"{partition}\\x1f\\x00meta"`` → the partition's clocks. Keys carry
the partition because a worker's table holds every partition it owns and an
engine loads only its own. Every write goes to the changelog partition of the
input partition it belongs to (:func:`~lianwatch.streams.faust_adapter.current_partition`).
"""

from __future__ import annotations

from typing import Any

from .batch import InMsg
from .faust_adapter import current_partition

__all__ = ["TableBackend"]


class TableBackend:
    """A family's state in one Faust table (see the module doc for keys)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def load(self, partition: int) -> tuple[dict[str, dict[str, bytes]], bytes | None]:
        prefix = f"{partition}\x1f".encode()
        states: dict[str, dict[str, bytes]] = {}
        meta = None
        for k, v in list(self.table.items()):
            if not isinstance(k, bytes):
                k = str(k).encode()
            if not k.startswith(prefix) or v is None:
                continue
            rest = k[len(prefix):].decode("utf-8")
            if rest == "\x00meta":
                meta = v
                continue
            det, _, subj = rest.partition("\x1f")
            states.setdefault(det, {})[subj] = v
        return states, meta

    def load_meta(self, partition: int) -> bytes | None:
        return self.table.get(f"{partition}\x1f\x00meta".encode())

    def put(self, partition: int, anchor: InMsg | None, detector: str, subject: str,
            value: bytes | None) -> None:
        key = f"{partition}\x1f{detector}\x1f{subject}".encode()
        with current_partition(anchor.topic if anchor else "", partition):
            if value is not None:
                self.table[key] = value
            elif key in self.table:
                del self.table[key]

    def put_meta(self, partition: int, anchor: InMsg | None, value: bytes) -> None:
        with current_partition(anchor.topic if anchor else "", partition):
            self.table[f"{partition}\x1f\x00meta".encode()] = value
