"""Dashboards as code: panels written once, rendered to Grafana JSON and to one HTML report.

* :mod:`.model` — the vocabulary (bilingual texts, panels, columns, variables, layout)
* :mod:`.definitions` — the five dashboards: Overview, Vehicles & fuel, Village payments,
  Projects, Alert detail (ClickHouse SQL with the Grafana ClickHouse plugin's macros)
* :mod:`.macros` — what the browser does to a query (``$__conditionalAll``, template variables)
* :mod:`.plugin_macros` — what the ClickHouse plugin's back end does (4.20.0's macros, macropro 1.0.1)
* :mod:`.thresholds` — the panels' numbers, read from the rules in force
* :mod:`.run` — a panel's SQL (or a built dashboard's JSON) run against the store as Grafana would
* :mod:`.grafana` — Grafana dashboard JSON (zh and en) and its structural checks
* :mod:`.provisioning` — data source and provider YAML, ``apply`` through grafana-client
* :mod:`.report`, :mod:`.svg` — the self-contained HTML report (inline SVG, no network)
* :mod:`.sample` — a small deterministic county written into a store (tests, previews)
* :mod:`.demo` — ``after_demo``: the demo's report
"""
