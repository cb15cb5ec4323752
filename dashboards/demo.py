"""The demo's last step: the HTML report of what it found (``data_dir/report.html``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["after_demo"]


def after_demo(*, store: Any, data_dir: str | Path, thresholds: Any = None,
               lang: str = "zh") -> Path | None:
    """Write the report next to the demo's store and print its path. Never fails the demo.

    ``thresholds``: the panels' thresholds (:class:`~.thresholds.Thresholds`; default: the
    contract's)."""
    from .report import write_report

    out = Path(data_dir) / "report.html"
    try:
        path = write_report(store, out, lang=lang, database=getattr(store, "db", "lianwatch"),
                            thresholds=thresholds)
    except Exception as exc:  # the report is a convenience; the demo's results stand
        print(f"report: not written ({exc})", file=sys.stderr)
        return None
    label = "报告 report" if lang == "zh" else "report"
    print(f"{label}: {path.resolve()}")
    return path
