"""Reading a contract directory (CONTRACT.md §2): which files, how to open them."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lianwatch.models.parse import STREAMS, parse_reference
from lianwatch.models.records import REFERENCE_MODELS

__all__ = ["find_files", "open_lines", "REFERENCE_KINDS", "EVENT_STREAMS"]

REFERENCE_KINDS = tuple(REFERENCE_MODELS)
EVENT_STREAMS = STREAMS
_CHUNK = 1 << 22


def find_files(directory: str | Path) -> dict[str, Path]:
    """Map each contract name present in ``directory`` to its file (``.jsonl`` or ``.jsonl.gz``)."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"input directory not found: {d}")
    found: dict[str, Path] = {}
    for name in (*REFERENCE_KINDS, *EVENT_STREAMS):
        for suffix in (".jsonl", ".jsonl.gz"):
            p = d / f"{name}{suffix}"
            if p.is_file():
                if name in found:
                    raise ValueError(f"both {found[name].name} and {p.name} in {d}: keep one")
                found[name] = p
    return found


def _open(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def open_lines(path: Path) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(line_number, line, bytes_read_so_far)`` for the non-blank lines of a file.

    Reads in large chunks (no per-line I/O); a final line without a newline counts.
    """
    for first, lines, done in open_chunks(path):
        for i, line in enumerate(lines):
            if line.strip():
                yield first + i, line, done


def open_chunks(path: Path) -> Iterator[tuple[int, list[bytes], int]]:
    """Yield ``(line_number_of_first, lines, bytes_read_so_far)`` per chunk of a file.

    The lines of a chunk keep their numbering (blank lines included, as empty
    ``bytes``), so a caller that enumerates them knows each line's number.
    """
    with _open(path) as f:
        rest = b""
        lineno = 1
        done = 0
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            done += len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield lineno, lines, done
            lineno += len(lines)
        if rest:
            yield lineno, [rest], done


def reference_records(files: dict[str, Path]) -> Iterator[tuple[str, str, bytes, Any, str | None]]:
    """Every reference line of a directory, validated: ``(kind, source, line, record, reason)``
    with ``record`` None (and a reason) for a line that cannot be read."""
    for kind in REFERENCE_KINDS:
        p = files.get(kind)
        if p is None:
            continue
        for lineno, line, _ in open_lines(p):
            rec, why = parse_reference(kind, line)
            yield kind, f"{p.name}:{lineno}", line, rec, why


def total_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)
