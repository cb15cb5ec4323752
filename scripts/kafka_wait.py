#!/usr/bin/env python3
"""Readiness probe for the local Kafka broker started by scripts/kafka.sh.

Stdlib only (no kafka client needed). Sends a Metadata v4 request (supported by
Kafka 2.x .. 4.x) over the raw wire protocol and succeeds once the broker
answers with at least one registered broker.

Usage: kafka_wait.py HOST PORT [TIMEOUT_SECONDS] [PID]
  TIMEOUT 0 = probe once.  If PID is given, give up early when it dies.
Exit codes: 0 ready, 1 timeout/not ready, 2 process died.
"""
from __future__ import annotations

import os
import socket
import struct
import sys
import time

CLIENT_ID = b"lianwatch-kafka-wait"


def _metadata_v4_request(correlation_id: int) -> bytes:
    # Request header v1: api_key int16, api_version int16, correlation_id int32,
    # client_id nullable string.  Metadata v4 body: topics array (0 entries, so
    # no topic is listed or auto-created), allow_auto_topic_creation bool.
    header = struct.pack(">hhih", 3, 4, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    body = struct.pack(">ib", 0, 0)
    msg = header + body
    return struct.pack(">i", len(msg)) + msg


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return buf


def probe(host: str, port: int, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_metadata_v4_request(7))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            data = _recv_exact(sock, size)
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    # Response header v0: correlation_id int32; body: throttle_time_ms int32,
    # brokers array (int32 count, ...).
    corr, _throttle, n_brokers = struct.unpack(">iii", data[:12])
    if corr != 7:
        return False, f"unexpected correlation id {corr}"
    if n_brokers < 1:
        return False, "broker answered but no broker registered yet"
    return True, f"{n_brokers} broker(s) in metadata"


def main(argv: list[str]) -> int:
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    port = int(argv[2]) if len(argv) > 2 else 9092
    timeout = float(argv[3]) if len(argv) > 3 else 0.0
    pid = int(argv[4]) if len(argv) > 4 and argv[4] else None
    deadline = time.monotonic() + timeout
    while True:
        ok, why = probe(host, port)
        if ok:
            print(f"kafka ready at {host}:{port} ({why})")
            return 0
        if pid is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"kafka process {pid} exited ({why})", file=sys.stderr)
                return 2
            except PermissionError:
                pass
        if time.monotonic() >= deadline:
            print(f"kafka not ready at {host}:{port}: {why}", file=sys.stderr)
            return 1
        time.sleep(0.25)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
