"""Dashboards as code: panels written once, rendered to Grafana JSON and to one HTML report.

* :mod:`.model` — the vocabulary (bilingual texts, panels, columns, variables, layout)
* :mod:`.definitions` — the five dashboards: Overview, Vehicles & fuel, Village payments,
  Projects, Alert detail (ClickHouse SQL with the Grafana ClickHouse plugin's macros)
* :mod:`.macros` — the plugin's macro and template-variable expansion, re-done exactly
* :mod:`.run` — a panel's SQL run against the alert store as Grafana would run it
* :mod:`.grafana` — Grafana dashboard JSON (zh and en) and its structural checks
* :mod:`.provisioning` — data source and provider YAML, ``apply`` through grafana-client
* :mod:`.report`, :mod:`.svg` — the self-contained HTML report (inline SVG, no network)
* :mod:`.sample` — a small deterministic county written into a store (tests, previews)
* :mod:`.demo` — ``after_demo``: the demo's report
"""
