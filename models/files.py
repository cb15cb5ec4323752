"""Reading a contract directory (CONTRACT.md §2): which files, how to open them.

Every layer that reads a directory (replay, the producer, incident pages, the
demo) comes here. A file that cannot be read at all — a directory or a broken
link in a file's place, no permission, a read error — is an
:class:`~lianwatch.errors.InputError` naming it: the run stops before it gives
a partial answer. A file that can be read is read whole: a UTF-8 byte-order
mark at its start is skipped, and a compressed file damaged part way (cut off,
corrupted) is read up to the damage; what follows is reported with the reason
(``on_damage``), so the caller sets it aside as a dead letter and goes on.

>>> import gzip, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> data = b"\\xef\\xbb\\xbf" + b"".join(b'{"n": %d}\\n' % i for i in range(3000))
>>> gz = gzip.compress(data)
>>> _ = (d / "fuel.jsonl.gz").write_bytes(gz[:len(gz) // 2])  # cut off
>>> lost = []
>>> lines = [line for _, line, _ in open_lines(d / "fuel.jsonl.gz",
...                                            on_damage=lambda *a: lost.append(a))]
>>> lines[0], len(lines) > 100, lost[0][0] == len(lines) + 1, lost[0][2][:30]
(b'{"n": 0}', True, True, 'fuel.jsonl.gz: the compressed ')
"""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lianwatch.errors import InputError

from .parse import parse_reference
from .streams import EVENT_STREAMS, REFERENCE_KINDS

__all__ = ["find_files", "open_lines", "open_chunks", "reference_records", "total_size",
           "OnDamage", "BOM"]

BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 22
_GZ_IN = 1 << 18  # compressed bytes fed at a time
_GZ_STEP = 1 << 10  # …and, to find where damage starts, a kilobyte (then a byte) at a time

#: ``on_damage(line_number, partial_line, reason)``: the file is damaged from that line on
OnDamage = Callable[[int, bytes, str], None]


def find_files(directory: str | Path) -> dict[str, Path]:
    """Map each contract name present in ``directory`` to its file (``.jsonl`` or ``.jsonl.gz``).

    Raises :class:`InputError` when the directory is missing, or when a contract
    name is there but is not a readable file (so it is never skipped in silence).
    """
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"input directory not found: {d}")
    found: dict[str, Path] = {}
    for name in (*REFERENCE_KINDS, *EVENT_STREAMS):
        for suffix in (".jsonl", ".jsonl.gz"):
            p = d / f"{name}{suffix}"
            if not os.path.lexists(p):
                continue
            _check_readable(p)
            if name in found:
                raise InputError(f"both {found[name].name} and {p.name} in {d}: keep one")
            found[name] = p
    return found


def _check_readable(p: Path) -> None:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"cannot read {p}: a broken link (its target "
                         f"{os.readlink(p)!r} does not exist)") from None
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"cannot read {p}: it is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"cannot read {p}: not a regular file")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from exc


class _Damaged(Exception):
    """Raised by a compressed reader after the last good byte: the reason."""


def _plain_pieces(f: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _gzip_pieces(f: IO[bytes], name: str) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file (members one after another), every byte
    before any damage; then :class:`_Damaged` when the data is cut off or broken."""
    d = zlib.decompressobj(31)
    started = False  # a member's first byte was seen
    pending = b""
    while True:
        comp = pending or f.read(_GZ_IN)
        pending = b""
        if not comp:
            if started and not d.eof:
                raise _Damaged(f"{name}: the compressed data ends early (the file is cut off)")
            return
        if d.eof:  # the next member (or zero padding after the last)
            if not comp.strip(b"\0"):
                continue
            d = zlib.decompressobj(31)
        started = True
        snap = d.copy()
        try:
            out = d.decompress(comp)
        except zlib.error as exc:
            yield from _up_to_damage(snap, comp)
            raise _Damaged(f"{name}: the compressed data is damaged ({_zlib_reason(exc)})") from exc
        if out:
            yield out
        if d.eof:
            pending = d.unused_data


def _up_to_damage(d: Any, comp: bytes) -> Iterator[bytes]:
    """Feed ``comp`` again from the state before it, a kilobyte and then a byte at a
    time: everything zlib gives before the byte where the damage shows."""
    for i in range(0, len(comp), _GZ_STEP):
        step = comp[i:i + _GZ_STEP]
        before = d.copy()
        try:
            out = d.decompress(step)
        except zlib.error:
            for b in range(len(step)):
                try:
                    out = before.decompress(step[b:b + 1])
                except zlib.error:
                    return
                if out:
                    yield out
            return
        if out:
            yield out


def _zlib_reason(exc: zlib.error) -> str:
    msg = str(exc)
    return msg.split(": ", 1)[1] if ": " in msg else msg


def open_lines(path: Path, on_damage: OnDamage | None = None) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(line_number, line, bytes_read_so_far)`` for the non-blank lines of a file.

    Reads in large chunks (no per-line I/O); a final line without a newline counts.
    """
    for first, lines, done in open_chunks(path, on_damage):
        for i, line in enumerate(lines):
            if line.strip():
                yield first + i, line, done


def open_chunks(path: Path, on_damage: OnDamage | None = None
                ) -> Iterator[tuple[int, list[bytes], int]]:
    """Yield ``(line_number_of_first, lines, bytes_read_so_far)`` per chunk of a file.

    The lines of a chunk keep their numbering (blank lines included, as empty
    ``bytes``), so a caller that enumerates them knows each line's number. A
    byte-order mark at the start of the file is dropped. A compressed file damaged
    part way yields every whole line before the damage, then calls
    ``on_damage(line_number, partial_line, reason)`` (without one: :class:`InputError`).
    """
    try:
        f: IO[bytes] = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with f:
        pieces = _gzip_pieces(f, path.name) if path.name.endswith(".gz") else _plain_pieces(f)
        rest = b""
        lineno = 1
        done = 0
        head = True  # still before the first complete line: a BOM may be there
        try:
            for chunk in pieces:
                done += len(chunk)
                data = rest + chunk
                if head:
                    if len(data) < len(BOM) and BOM.startswith(data):
                        rest = data
                        continue
                    head = False
                    if data.startswith(BOM):
                        data = data[len(BOM):]
                lines = data.split(b"\n")
                rest = lines.pop()
                if lines:
                    yield lineno, lines, done
                    lineno += len(lines)
        except _Damaged as exc:
            if on_damage is None:
                raise InputError(str(exc)) from None
            on_damage(lineno, rest, f"{exc}: line {lineno} and after are lost")
            return
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if head and rest.startswith(BOM):
            rest = rest[len(BOM):]
        if rest:
            yield lineno, [rest], done


def reference_records(files: dict[str, Path]) -> Iterator[tuple[str, str, bytes, Any, str | None]]:
    """Every reference line of a directory, validated: ``(kind, source, line, record, reason)``
    with ``record`` None (and a reason) for a line that cannot be read (and for the
    damaged rest of a compressed file)."""
    for kind in REFERENCE_KINDS:
        p = files.get(kind)
        if p is None:
            continue
        lost: list[tuple[int, bytes, str]] = []
        for lineno, line, _ in open_lines(p, on_damage=lambda *a: lost.append(a)):
            rec, why = parse_reference(kind, line)
            yield kind, f"{p.name}:{lineno}", line, rec, why
        for lineno, partial, why in lost:
            yield kind, f"{p.name}:{lineno}", partial, None, why


def total_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)
