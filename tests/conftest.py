"""Shared fixtures: the real services (skipped, or failed under
LIANWATCH_REQUIRE_SERVICES=1, when absent) and one demo county per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def require(what: str) -> None:
    """Skip a test whose service is missing; fail instead when CI demands services."""
    if os.environ.get("LIANWATCH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (LIANWATCH_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Demo:
    input: Path
    store: Any
    result: Any
    data_dir: Path


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Demo:
    """A generated county (default size) replayed into a chDB store, once per session."""
    from lianwatch.replay.run import replay_dir
    from lianwatch.sim import GenConfig, generate
    from lianwatch.sinks.chdb_backend import ChdbBackend
    from lianwatch.sinks.store import AlertStore

    d = tmp_path_factory.mktemp("demo")
    inp = d / "demo-input"
    generate(inp, GenConfig(seed=7, start=date(2026, 3, 2)))
    store = AlertStore(ChdbBackend(d / "store"))
    store.migrate()
    res = replay_dir(inp, d / "demo-alerts.jsonl", store=store, progress=False)
    return Demo(input=inp, store=store, result=res, data_dir=d)


def module_store(tmp_path_factory, database: str):
    """One chDB store for a test module, in a database of its own. chDB serves one data
    directory per process: when one is open already (the session's demo store), share
    it rather than close it under its owner."""
    from lianwatch.sinks import chdb_backend
    from lianwatch.sinks.store import AlertStore

    path = next(iter(chdb_backend._SESSIONS), None) or tmp_path_factory.mktemp(database) / "store"
    s = AlertStore(chdb_backend.ChdbBackend(path), database=database)
    s.migrate()
    return s


@pytest.fixture(scope="session")
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        require("headless Chromium (apt-get install chromium)")
    return exe  # type: ignore[return-value]


def script(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          check=check)
