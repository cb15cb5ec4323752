"""The demo's last step: the HTML report of what it found (``data_dir/report.html``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["after_demo"]


def after_demo(*, settings: Any, store: Any, data_dir: str | Path, result: Any = None) -> Path | None:
    """Write the report next to the demo's store and print its path. Never fails the demo."""
    from lianwatch.lifecycle.config import load_policies

    from .report import write_report
    from .thresholds import Thresholds

    out = Path(data_dir) / "report.html"
    try:
        th = Thresholds.load(getattr(settings, "rules_file", None), load_policies(settings)[0])
        path = write_report(store, out, lang=getattr(settings, "lang", "zh"),
                            database=getattr(store, "db", "lianwatch"), thresholds=th)
    except Exception as exc:  # the report is a convenience; the demo's results stand
        print(f"report: not written ({exc})", file=sys.stderr)
        return None
    label = "报告 report" if getattr(settings, "lang", "zh") == "zh" else "report"
    print(f"{label}: {path.resolve()}")
    return path
