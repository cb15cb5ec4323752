"""Incident reconstruction from the archive alone, and what-if replays."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lianwatch.incident import ArchiveSource, DirSource, reconstruct
from lianwatch.incident.html import render_incident
from lianwatch.replay.whatif import diff_alerts, format_diff, replay_store
from lianwatch.detectors import implemented_rules
from lianwatch.rules import RuleSet


def one_per_rule(alerts):
    seen = {}
    for a in sorted(alerts, key=lambda a: a.alert_id):
        seen.setdefault(a.rule, a)
    return seen


@pytest.mark.parametrize("rule", implemented_rules())
def test_each_rule_is_reproduced_from_the_archive_alone(demo, rule):
    alert = one_per_rule(demo.result.alerts).get(rule)
    assert alert is not None, f"the demo raised no {rule}"
    stored = demo.store.get_alert(alert.alert_id)
    rec = reconstruct(stored, ArchiveSource(demo.store))
    assert rec.reproduced, rec.differences
    assert rec.replayed.level == stored.level and rec.replayed.evidence == stored.evidence
    assert rec.n_records > 0 and len(rec.input_hash) == 64


def test_directory_source_gives_the_same_reconstruction(demo):
    alert = one_per_rule(demo.result.alerts)["fuel.not_at_station"]
    a = reconstruct(alert, ArchiveSource(demo.store))
    b = reconstruct(alert, DirSource(demo.input))
    assert a.reproduced and b.reproduced
    assert a.replayed.evidence == b.replayed.evidence


def test_fuel_reconstruction_uses_the_ordering_key_not_a_scan(demo):
    alert = one_per_rule(demo.result.alerts)["fuel.not_at_station"]
    rec = reconstruct(alert, ArchiveSource(demo.store))
    total = demo.store.counts()["events_gps"]
    assert 0 < len(rec.records["gps"]) < total / 10  # one vehicle, a few days
    plan = demo.store.query(
        "EXPLAIN indexes = 1 SELECT raw FROM lianwatch.events_gps "
        f"WHERE subject_id = '{alert.subject_id}' AND event_time >= toDateTime64(0, 3)")
    text = " ".join(str(v) for r in plan for v in r.values())
    assert "PrimaryKey" in text and "subject_id" in text


def test_incident_page_is_self_contained(demo, tmp_path):
    alert = one_per_rule(demo.result.alerts)["fuel.not_at_station"]
    rec = reconstruct(alert, ArchiveSource(demo.store))
    page = render_incident(rec, [{"at": "2026-03-20T10:00:00+08:00", "action": "rectify",
                                  "state": "rectifying", "by": "镇纪委", "note": "已整改"}])
    assert "<svg" in page and 'class="track"' in page and 'id="timeline"' in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert rec.input_hash in page and "已从存档复现" in page


def test_whatif_raising_the_distance_threshold(demo):
    base = [a for a in demo.result.alerts if a.rule == "fuel.not_at_station"]
    dists = sorted(a.evidence["distance_m"] for a in base)
    assert len(dists) >= 3
    cut = (dists[len(dists) // 2 - 1] + dists[len(dists) // 2]) / 2  # between two alerts
    rules = RuleSet({"fuel": {"station_radius_m": cut}})
    replayed = replay_store(demo.store, rules=rules)
    d = diff_alerts(demo.store.alerts(limit=100000), replayed)
    vanished = {a.alert_id for a in d.vanished}
    assert vanished == {a.alert_id for a in base if a.evidence["distance_m"] <= cut}
    assert not d.new and not d.level_changed
    assert {a.rule for a in d.vanished} == {"fuel.not_at_station"}
    text = format_diff(d)
    assert "fuel.not_at_station" in text and "vanished" in text


def test_whatif_with_the_same_rules_is_empty(demo):
    d = diff_alerts(demo.store.alerts(limit=100000), replay_store(demo.store))
    assert d.empty, format_diff(d)


@pytest.mark.browser
def test_incident_page_screenshot(demo, tmp_path, chromium):
    from tests.png import dominant_colours, read_png

    alert = next(a for a in sorted(demo.result.alerts, key=lambda a: a.alert_id)
                 if a.rule == "fuel.not_at_station" and a.evidence["vehicle_state"] == "moving")
    rec = reconstruct(alert, ArchiveSource(demo.store))
    page = tmp_path / "incident.html"
    page.write_text(render_incident(rec), encoding="utf-8")
    shot = tmp_path / "incident.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1200,1400", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    w, h, pixels = read_png(shot)
    assert (w, h) == (1200, 1400)
    def near(rgb, tol=12):
        return sum(1 for c in pixels if all(abs(c[k] - rgb[k]) < tol for k in range(3)))

    assert near((0x45, 0x5A, 0x64)) > 200  # the track (polyline and ping dots) was drawn
    assert near((0xD3, 0x2F, 0x2F)) > 100  # the red marker and the level badge
    assert near((0x15, 0x65, 0xC0)) > 50  # the station marker
    assert dominant_colours(pixels)[0] == (255, 255, 255)  # a page, not a blank or error screen
    docs = Path(__file__).resolve().parents[1] / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "incident.png").write_bytes(shot.read_bytes())
