"""The vocabulary panels are written in, once, for both renderers.

A :class:`Panel` holds a title in both languages, a visualisation kind, the
ClickHouse SQL exactly as Grafana keeps it (the ClickHouse plugin's macros,
template variables) and how to show its columns. :mod:`.grafana` turns it
into Grafana dashboard JSON, :mod:`.report` runs the same SQL (macros
expanded as the plugin expands them, :mod:`.macros`) against the store and
draws it into HTML.

SQL refers to the store's database as ``__DB__`` (replaced when rendered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["T", "Column", "Series", "Query", "Layer", "Var", "Panel", "Dashboard",
           "Mapping", "COLORS", "DB_TOKEN", "PanelKind", "layout"]

DB_TOKEN = "__DB__"
GRID_COLUMNS = 24

#: Grafana's named colours, the same in the HTML report
COLORS = {
    "red": "#F2495C", "yellow": "#FADE2A", "green": "#73BF69", "blue": "#5794F2",
    "orange": "#FF9830", "purple": "#B877D9", "text": "#464C54", "grey": "#8E8E8E",
    "dark-red": "#C4162A", "dark-yellow": "#E0B400", "dark-green": "#37872D",
    "light-blue": "#8AB8FF", "semi-dark-orange": "#FA6400", "transparent": "transparent",
}

PanelKind = Literal["stat", "timeseries", "barchart", "piechart", "table", "geomap"]
Lang = Literal["zh", "en"]


@dataclass(frozen=True)
class T:
    """A text in Chinese (default) and English."""

    zh: str
    en: str

    def __call__(self, lang: str = "zh") -> str:
        return self.en if lang == "en" else self.zh


@dataclass(frozen=True)
class Mapping:
    """A value mapping: raw value → label (both languages) and an optional colour."""

    values: dict[str, tuple[T, str | None]]

    def text(self, value: object, lang: str) -> str:
        hit = self.values.get(str(value))
        return hit[0](lang) if hit else str(value)

    def color(self, value: object) -> str | None:
        hit = self.values.get(str(value))
        return hit[1] if hit else None


@dataclass(frozen=True)
class Column:
    """One column a table shows (in SQL order; columns not listed are not shown)."""

    name: str
    label: T
    kind: Literal["text", "number", "time", "date", "json"] = "text"
    unit: str | None = None
    decimals: int | None = None
    #: ((from value, colour), …) ascending; the first ``from`` is None (base)
    thresholds: tuple[tuple[float | None, str], ...] | None = None
    #: a mapping by name from :data:`lianwatch.dashboards.labels.MAPPINGS`
    mapping: str | None = None
    #: colour the cell background (mapping or thresholds colour)
    colored: bool = False
    #: a drill-down: ``"alert"`` (Alert detail), ``"vehicle"`` or ``"village"``
    link: str | None = None
    width: int | None = None
    #: shown only in this language (``title`` vs ``title_en``)
    lang: str | None = None
    #: returned for links (``vehicle_id`` …) but not shown
    hidden: bool = False


@dataclass(frozen=True)
class Series:
    """A numeric column drawn as a series (charts) with its label and colour."""

    name: str
    label: T
    color: str
    unit: str | None = None


@dataclass(frozen=True)
class Query:
    ref: str
    sql: str


@dataclass(frozen=True)
class Layer:
    """A geomap markers layer fed by query ``ref``."""

    ref: str
    name: T
    color: str = "red"
    #: colour by this numeric field's thresholds instead of ``color``
    color_field: str | None = None
    size: int = 6
    #: join points of one group in time order (a track), SVG report only
    track_by: str | None = None


@dataclass(frozen=True)
class Var:
    """A template variable: ``query`` (SQL returning value[, text]) or ``custom``."""

    name: str
    label: T
    kind: Literal["query", "custom", "textbox"] = "query"
    sql: str = ""
    #: custom options: (value, label)
    options: tuple[tuple[str, T], ...] = ()
    multi: bool = True
    include_all: bool = True
    hide: bool = False


@dataclass
class Panel:
    key: str
    title: T
    kind: PanelKind
    sql: str
    w: int = 12
    h: int = 8
    description: T | None = None
    #: columns the SQL must return (checked by the tests against the store)
    fields: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    series: tuple[Series, ...] = ()
    #: category (bar/pie) or time (timeseries) column
    x: str | None = None
    unit: str | None = None
    decimals: int | None = None
    thresholds: tuple[tuple[float | None, str], ...] | None = None
    #: the value mapping applied to ``x`` (bar/pie categories)
    x_mapping: str | None = None
    #: minimum interval (``$__timeInterval``), Grafana's panel ``interval``
    interval: str | None = None
    stacked: bool = False
    horizontal: bool = True
    #: more queries (geomap layers): refId B, C …
    extra: tuple[Query, ...] = ()
    layers: tuple[Layer, ...] = ()
    #: for the HTML report: variable → SQL picking one value (first column of the first row)
    report_vars: dict[str, str] = field(default_factory=dict)
    #: text shown when a panel has no rows
    empty: T | None = None

    def queries(self) -> list[Query]:
        return [Query("A", self.sql), *self.extra]


@dataclass
class Dashboard:
    key: str
    uid: str
    title: T
    description: T
    variables: list[Var]
    panels: list[Panel]
    tags: tuple[str, ...] = ()
    time_from: str = "now-7d"
    time_to: str = "now"
    refresh: str = "1m"

    def uid_for(self, lang: str) -> str:
        return self.uid if lang == "zh" else f"{self.uid}-en"

    def var(self, name: str) -> Var | None:
        return next((v for v in self.variables if v.name == name), None)


def layout(panels: list[Panel]) -> dict[str, dict[str, int]]:
    """Grid positions: panels flow left to right in rows of 24 columns; a row
    starts below the tallest panel of the one before (so nothing overlaps)."""
    pos: dict[str, dict[str, int]] = {}
    x = y = row_h = 0
    for p in panels:
        w = max(1, min(GRID_COLUMNS, p.w))
        if x + w > GRID_COLUMNS:
            y += row_h
            x = row_h = 0
        pos[p.key] = {"x": x, "y": y, "w": w, "h": p.h}
        x += w
        row_h = max(row_h, p.h)
    return pos
