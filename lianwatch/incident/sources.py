"""Where reconstruction reads records from: the store's archive, or a contract directory.

Both answer the same two questions: the reference data, and the raw records of
one stream for one subject within a time range (ascending time).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from lianwatch.models.clock import DEFAULT_TZ
from lianwatch.models.parse import parse_event
from lianwatch.reference import Reference
from lianwatch.models.files import find_files, open_lines
from lianwatch.models.streams import SPECS

__all__ = ["ArchiveSource", "DirSource", "Records"]

Records = list[tuple[float, bytes]]


class _Source:
    name = "?"

    def __init__(self) -> None:
        self._ref: Reference | None = None
        self.reference_raw: list[bytes] = []

    def _reference_lines(self, kind: str) -> Iterable[bytes]:
        raise NotImplementedError

    def reference(self) -> Reference:
        """The reference data, parsed once; its raw lines are kept for the input hash."""
        if self._ref is None:
            self._ref = Reference.from_raw(self._reference_lines, kept=self.reference_raw)
        return self._ref


class ArchiveSource(_Source):
    """The raw-event archive in the alert store (queries use its ordering key)."""

    name = "archive"

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store

    def _reference_lines(self, kind: str) -> Iterable[bytes]:
        return self.store.reference_rows(kind)

    def records(self, stream: str, subject: str, start: float | None, end: float | None) -> Records:
        return self.store.archived(stream, subject=subject, start=start, end=end)


class DirSource(_Source):
    """A contract directory (``--input``): scanned once per stream, indexed by subject."""

    name = "directory"

    def __init__(self, directory: str | Path, tz: tzinfo = DEFAULT_TZ) -> None:
        super().__init__()
        self.dir = Path(directory)
        self.tz = tz
        self.files = find_files(self.dir)
        self._index: dict[str, dict[str, Records]] = {}

    def _reference_lines(self, kind: str) -> Iterable[bytes]:
        if kind in self.files:
            for _, line, _ in open_lines(self.files[kind]):
                yield line

    def _load(self, stream: str) -> dict[str, Records]:
        if stream not in self._index:
            ref = self.reference()
            idx: dict[str, Records] = defaultdict(list)
            if stream in self.files:
                for _, line, _ in open_lines(self.files[stream]):
                    ev, _ = parse_event(stream, line, self.tz)
                    if ev is None:
                        continue
                    subj = _subject(stream, ev, ref)
                    if subj:
                        idx[subj].append((ev["t"], line))
            for recs in idx.values():
                recs.sort()
            self._index[stream] = idx
        return self._index[stream]

    def records(self, stream: str, subject: str, start: float | None, end: float | None) -> Records:
        out = []
        for t, raw in self._load(stream).get(subject, ()):
            if (start is None or t >= start) and (end is None or t <= end):
                out.append((t, raw))
        return out


def _subject(stream: str, ev: dict[str, Any], ref: Reference) -> str | None:
    if stream in ("gps", "fuel"):
        return ref.vehicle_of(ev)
    if stream == "payments":
        return ev["village_id"]
    return ev.get(SPECS[stream].subject_field)
