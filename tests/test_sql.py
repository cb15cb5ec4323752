"""The one SQL quoting helper (lianwatch.sinks.sql), run for real: adversarial strings
and names through chDB and the ClickHouse 18.16 server, as literals, IN lists, names,
JSON keys and stored values found again by a WHERE."""

from __future__ import annotations

import pytest

from lianwatch.errors import ConfigError
from lianwatch.sinks.schema import json_string_sql
from lianwatch.sinks.sql import in_list, plain_ident, quote_ident, quote_str
from tests.conftest import module_store
from tests.test_server_sink import ch_env, server_store  # noqa: F401 (the server fixture)

NASTY = [
    "O'Hare", "it''s", "a\\b", "\\", "\\'", "'\\", "ends with \\", "'; DROP TABLE x; --",
    "nul\0byte", "\0", "line\nbreak", "cr\rlf\r\n", "tab\there", "`back`quote`", '"dq"',
    "中文村务卡", "益农镇·兴裕村", "emoji 🙂", "\x01\x1f\x7f", "\\0 is not NUL", "\\n is not LF",
    "%_ like", "", " ", "{db}", "$__timeFilter(x)",
]


def test_quote_str_text():
    assert quote_str("O'Hare") == "'O\\'Hare'"
    assert quote_str("a\\b") == "'a\\\\b'"
    assert quote_str("x\0y\nz\r\t") == "'x\\0y\\nz\\r\\t'"
    assert quote_str("中文") == "'中文'"  # UTF-8 passes as it is
    assert "\n" not in "".join(quote_str(s) for s in NASTY)  # one logical line
    assert "\0" not in "".join(quote_str(s) for s in NASTY)


def test_in_list_and_names():
    assert in_list(["closed", "dismissed"]) == "('closed', 'dismissed')"
    with pytest.raises(ValueError):
        in_list([])
    assert quote_ident("by") == "`by`" and quote_ident("a`b") == "`a\\`b`"
    assert plain_ident("lw_test_1") == "lw_test_1"
    for bad in ("lw-x", "lw x", "1lw", "lw;DROP", "", "库"):
        with pytest.raises(ConfigError):
            plain_ident(bad)


def _round_trip(select) -> None:
    """Every nasty string comes back unchanged as a literal, in an IN list, as a name."""
    for s in NASTY:
        (row,) = select(f"SELECT {quote_str(s)} AS v, {quote_str(s)} IN {in_list([s, 'z'])} AS hit")
        assert row["v"] == s and int(row["hit"]) == 1, repr(s)
    for name in ("we`ird", "a\\b", "中文列", "by", "has space", "tab\there"):
        (row,) = select(f"SELECT 1 AS {quote_ident(name)}")
        assert list(row) == [name], repr(name)


def _stored_and_found(store) -> None:
    """Stored through the store's own inserts, found again by a WHERE on the quoted value."""
    store.truncate_all()
    store.insert_dicts("alert_history", [
        {"alert_id": f"a{i}", "seq": 1, "at_time": 1772409600.0, "action": "rectify",
         "state": "rectifying", "by": s, "note": s, "evidence_ref": ""}
        for i, s in enumerate(NASTY)])
    for i, s in enumerate(NASTY):
        rows = store.query(f"SELECT alert_id FROM {store.db}.alert_history "
                           f"WHERE note = {quote_str(s)} AND `by` IN {in_list([s])}")
        assert [r["alert_id"] for r in rows] == [f"a{i}"], repr(s)
    got = store.query(f"SELECT count() AS n FROM {store.db}.alert_history "
                      f"WHERE note IN {in_list(NASTY)}")
    assert int(got[0]["n"]) == len(NASTY)


def _json_keys(select, caps) -> None:
    """A key with a quote (and, with JSONExtract, a backslash) reaches the JSON function
    intact. (18.16's visitParam functions read compact JSON and compare raw key text.)"""
    import json

    keys = ["O'Hare", "中文", "it''s"] + (["a\\b", "tab\tkey"] if caps.json_extract else [])
    for key in keys:
        doc = json.dumps({key: "v1"}, ensure_ascii=False, separators=(",", ":"))
        (row,) = select(f"SELECT {json_string_sql(caps, quote_str(doc), key)} AS v")
        assert row["v"] == "v1", repr(key)


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory):
    return module_store(tmp_path_factory, "lw_test_sql")


def test_chdb_round_trip(chdb_store):
    _round_trip(chdb_store.query)
    _stored_and_found(chdb_store)
    _json_keys(chdb_store.query, chdb_store.caps)


@pytest.mark.chserver
def test_server_round_trip(ch_env):  # noqa: F811
    st = server_store(ch_env, "lw_test_sql_srv")
    try:
        st.migrate()
        _round_trip(st.query)
        _stored_and_found(st)
        _json_keys(st.query, st.caps)
    finally:
        st.backend.execute("DROP DATABASE IF EXISTS lw_test_sql_srv")
        st.close()
