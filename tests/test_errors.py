"""One error tree: every third-party error is converted at its module's boundary into the
lianwatch class that says what went wrong, and the command line prints it as one line.

Against the real things: the ClickHouse 18.16 server (stopped for real), chDB, the
Aliyun and Tencent SDKs on a transport that fails, grafana-client on a refusing HTTP
server, pydantic-settings on a bad environment.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from pydantic import SecretStr
from requests.adapters import BaseAdapter

from lianwatch.errors import (
    ConfigError, GrafanaError, LianwatchError, ProviderError, StoreError,
)
from lianwatch.sinks.chdb_backend import ChdbBackend, chdb_errors
from lianwatch.sinks.server import ClickHouseConfig, ServerBackend, clickhouse_errors
from tests.test_server_sink import _ch, ch_env, kill_server  # noqa: F401 (fixture)


def _cli(argv, monkeypatch, capsys, **env) -> tuple[int, str]:
    from lianwatch.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = main(argv)
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------ the ClickHouse server

def _config(env, **kw) -> ClickHouseConfig:
    return ClickHouseConfig(host=env["CH_HOST"], port=int(env["CH_TCP_PORT"]), user=env["CH_USER"],
                            password=SecretStr(env["CH_PASSWORD"]), send_receive_timeout=10.0,
                            **kw)


@pytest.mark.chserver
def test_server_refusing_a_statement_is_a_permanent_store_error(ch_env):
    be = ServerBackend(_config(ch_env))
    try:
        with pytest.raises(StoreError) as e:
            be.select("SELEC 1")
        assert e.value.code == 62 and e.value.transient is False  # SYNTAX_ERROR
        assert type(e.value.__cause__).__name__ == "ServerException"
        with pytest.raises(StoreError) as e:
            be.select("SELECT * FROM lw_no_such_db.alerts")
        assert e.value.code == 81 and e.value.transient is True  # until `db migrate` runs
        assert be.select("SELECT 1 AS one") == [{"one": 1}]  # the connection is fine after
    finally:
        be.close()


@pytest.mark.chserver
def test_a_stopped_server_is_a_transient_store_error(ch_env, monkeypatch, capsys):
    """The server goes away under a connected backend: the next statement, a new
    connection and the CLI all say so as a transient StoreError; it comes back."""
    be = ServerBackend(_config(ch_env))
    assert be.select("SELECT 1 AS one") == [{"one": 1}]
    kill_server()
    try:
        with pytest.raises(StoreError) as e:
            be.select("SELECT 1 AS one")
        assert e.value.transient is True
        assert isinstance(e.value, LianwatchError) and e.value.__cause__ is not None
        with pytest.raises(StoreError) as e:
            ServerBackend(_config(ch_env))
        assert e.value.transient is True and e.value.code == 210  # NETWORK_ERROR: refused
        code, err = _cli(["alerts"], monkeypatch, capsys, LIANWATCH_STORE="clickhouse",
                         LIANWATCH_CH_HOST=ch_env["CH_HOST"], LIANWATCH_CH_PORT=ch_env["CH_TCP_PORT"],
                         LIANWATCH_CH_USER=ch_env["CH_USER"], LIANWATCH_CH_PASSWORD=ch_env["CH_PASSWORD"])
        line = _one_line(err)
        assert code == 1 and line.startswith("lianwatch alerts: cannot reach the alert store")
        assert ch_env["CH_PASSWORD"] not in line
    finally:
        _ch("start")
    assert be.select("SELECT 1 AS one") == [{"one": 1}]  # reconnects by itself
    be.close()


def test_every_driver_error_is_mapped():
    """Like httpx's test that every httpcore exception is mapped: each class
    clickhouse-driver defines becomes a StoreError at the boundary."""
    from clickhouse_driver import errors

    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, BaseException) and c.__module__ == errors.__name__]
    assert len(classes) >= 10
    for cls in classes:
        exc = cls("boom")
        with pytest.raises(StoreError):
            with clickhouse_errors("h:1"):
                raise exc


def test_the_server_boundary_lets_bugs_through():
    with pytest.raises(KeyError):
        with clickhouse_errors("h:1"):
            raise KeyError("a bug is not a store outage")
    with pytest.raises(StoreError) as e:
        with clickhouse_errors("h:1"):
            raise TypeError("unsupported type for a UInt32 column")  # the driver's serializer
    assert e.value.transient is False


# ------------------------------------------------------------------ chDB

def test_chdb_statement_errors(tmp_path):
    be = ChdbBackend(tmp_path / "store")
    with pytest.raises(StoreError) as e:
        be.select("SELEC 1")
    assert e.value.code == 62 and e.value.transient is False
    assert type(e.value.__cause__).__name__ == "ChdbError"  # (chdb ships two such classes)
    with pytest.raises(StoreError) as e:
        be.execute("INSERT INTO lw_no_such_db.t VALUES (1)")
    assert e.value.code == 81 and e.value.transient is True
    with pytest.raises(StoreError) as e:
        be.select("SELECT throwIf(1)")
    assert e.value.code == 395 and e.value.transient is True  # not a "bad statement" code
    assert be.select("SELECT 1 AS one") == [{"one": 1}]


def test_chdb_data_dir_that_cannot_be_a_store(tmp_path, monkeypatch, capsys):
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    with pytest.raises(StoreError) as e:
        ChdbBackend(f / "store")
    assert e.value.transient is False and isinstance(e.value.__cause__, OSError)
    code, err = _cli(["alerts"], monkeypatch, capsys, LIANWATCH_STORE="chdb",
                     LIANWATCH_DATA_DIR=str(f))
    assert code == 1 and _one_line(err).startswith("lianwatch alerts: cannot open the alert store")


def test_the_chdb_boundary_lets_bugs_through():
    with pytest.raises(KeyError):
        with chdb_errors():
            raise KeyError("a bug")


# ------------------------------------------------------------------ SMS providers

class _Down(BaseAdapter):
    """A transport whose network is down (the SDKs' own requests sessions use it)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def send(self, request, **kw):
        self.calls += 1
        raise requests.ConnectionError("no route to the carrier for 13800000012")

    def close(self) -> None:
        pass


def _msg():
    from lianwatch.lifecycle.providers import Message

    return Message(phone="13800000012", template="alert", params={"code": "abc"}, text="t",
                   ref="ref-1", at=1772409600.0)


def test_tencent_sdk_errors_become_provider_errors():
    pytest.importorskip("tencentcloud.sms.v20210111")
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
        TencentCloudSDKException,
    )

    from tests.test_sms_providers import tencent

    p, _ = tencent()
    down = _Down()
    p.client.request.conn._session.mount("https://", down)
    with pytest.raises(ProviderError) as e:
        p.send(_msg())
    assert down.calls == 1 and e.value.code == "ClientNetworkError"
    assert isinstance(e.value.__cause__, TencentCloudSDKException)
    assert "13800000012" not in str(e.value) and "138****0012" in str(e.value)


def test_aliyun_sdk_errors_become_provider_errors(monkeypatch):
    pytest.importorskip("alibabacloud_dysmsapi20170525")
    from Tea.exceptions import TeaException

    from tests.test_sms_providers import aliyun_over

    down = _Down()
    p = aliyun_over(monkeypatch, down)
    with pytest.raises(ProviderError) as e:
        p.send(_msg())
    assert down.calls >= 1 and isinstance(e.value.__cause__, TeaException)
    assert "13800000012" not in str(e.value)


def test_outbox_that_cannot_be_written_is_a_provider_error(tmp_path):
    from lianwatch.lifecycle.providers import OutboxProvider

    (tmp_path / "box").mkdir()
    with pytest.raises(ProviderError) as e:
        OutboxProvider(tmp_path / "box").send(_msg())  # a directory, not a file
    assert isinstance(e.value.__cause__, OSError)


def test_the_provider_boundary_lets_bugs_through():
    from lianwatch.lifecycle.providers import provider_errors

    with pytest.raises(AttributeError):
        with provider_errors("aliyun"):
            raise AttributeError("a bug in our request building")


def test_the_notifier_records_provider_errors_and_only_those(tmp_path):
    """A ProviderError is a failed try (recorded, retried later); a bug is not hidden."""
    from lianwatch.lifecycle.config import NotifyPolicy
    from lianwatch.lifecycle.notify import Notifier

    class Flaky:
        name, sign_name, param_max_len = "flaky", "廉情监督", None

        def __init__(self, exc):
            self.exc = exc

        def send(self, msg):
            raise self.exc

    n = Notifier(_NoStore(), None, Flaky(ProviderError("carrier down", code="Throttling")),
                 policy=NotifyPolicy(retry_inline=2, retry_backoff_s=0), sleep=lambda s: None,
                 phone_hash_key="test-key-0123456789abcdef0123456789")
    res = n._send(_msg())
    assert [r.ok for r in res] == [False, False] and "carrier down" in res[-1].error
    n.provider = Flaky(ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError):
        n._send(_msg())


class _NoStore:
    db = "lw_nowhere"  # the notifier only names its tables when it is built


# ------------------------------------------------------------------ settings

def test_a_bad_setting_is_a_config_error_naming_the_variable(monkeypatch, capsys):
    from lianwatch.settings import KafkaSettings, Settings, read

    monkeypatch.setenv("LIANWATCH_STORE", "oracle")
    with pytest.raises(ConfigError, match="LIANWATCH_STORE"):
        read(Settings)
    code, err = _cli(["alerts"], monkeypatch, capsys)
    assert code == 1 and _one_line(err).startswith("lianwatch alerts: LIANWATCH_STORE:")
    monkeypatch.delenv("LIANWATCH_STORE")
    monkeypatch.setenv("LIANWATCH_KAFKA_PARTITIONS", "many")
    with pytest.raises(ConfigError, match="LIANWATCH_KAFKA_PARTITIONS"):
        read(KafkaSettings)
    code, err = _cli(["produce", "--help"], monkeypatch, capsys)  # defaults come from it
    assert code == 1 and "LIANWATCH_KAFKA_PARTITIONS" in _one_line(err)


def test_secret_values_stay_out_of_config_errors(monkeypatch):
    from lianwatch.settings import ClickHouseSettings, read

    monkeypatch.setenv("LIANWATCH_CH_PORT", "s3cr3t-not-a-port")
    with pytest.raises(ConfigError) as e:
        read(ClickHouseSettings)
    assert "LIANWATCH_CH_PORT" in str(e.value) and "s3cr3t" not in str(e.value)


# ------------------------------------------------------------------ Grafana

class _Refusing(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        body = json.dumps({"message": "invalid API key"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def refusing_grafana():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_grafana_errors(refusing_grafana, monkeypatch, capsys):
    from lianwatch.dashboards.provisioning import apply

    with pytest.raises(GrafanaError) as e:
        apply(refusing_grafana, ch=ClickHouseConfig(), token="bad", log=lambda *a: None)
    assert e.value.status == 401 and "HTTP 401" in str(e.value)
    with pytest.raises(GrafanaError) as e:
        apply("http://127.0.0.1:9", ch=ClickHouseConfig(), timeout=2, log=lambda *a: None)
    assert e.value.status is None
    code, err = _cli(["dashboards", "apply", "--url", refusing_grafana], monkeypatch, capsys,
                     GRAFANA_TOKEN="bad")
    assert code == 1 and "401" in _one_line(err)


# ------------------------------------------------------------------ the command line

@pytest.mark.parametrize("argv, says", [
    (["alerts", "--since", "not-a-time"], "cannot read time 'not-a-time'"),
    (["incident", "0123456789ab", "--input", "/nonexistent/lw"], "input directory not found"),
    (["generate", "/proc/lianwatch-cannot-be-here"], "cannot write the county"),
])
def test_commands_say_what_went_wrong_in_one_line(argv, says, tmp_path, monkeypatch, capsys):
    """Each of these was a traceback (ValueError, FileNotFoundError, OSError)."""
    code, err = _cli(argv, monkeypatch, capsys, LIANWATCH_DATA_DIR=str(tmp_path))
    assert code == 1 and says in _one_line(err)
