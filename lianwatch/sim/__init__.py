"""Synthetic county generator: reference data, event streams and ground truth.

>>> from lianwatch.sim import GenConfig
>>> GenConfig().vehicles
50

``generate(out_dir, GenConfig(...))`` (or ``python -m lianwatch.sim OUT_DIR``)
writes the contract's files ``vehicles villages officials projects gps fuel
payments progress`` (``.jsonl``, or ``.jsonl.gz`` with ``gzip=True``) and two
files that are not part of the contract (replay ignores them):

* ``labels.jsonl``: one line per expected alert,
  ``{"rule", "level", "subject_type", "subject_id", "source_event_ids",
  "event_ts", "note", "kind"}``; an alert matches a label when rule and
  subject are equal and their ``source_event_ids`` intersect.
  ``event_ts`` is when the alert is first due (for ``project.overdue_start``
  the yellow stage); ``kind`` names the injection.
* ``lookalikes.jsonl``: records built to sit close to a threshold without
  crossing it (must not alert), same shape without ``level``.

Output is byte-identical for one configuration. The county is Xiaoshan
(Hangzhou); GPS is WGS-84; some station positions are published in GCJ-02
or BD-09. Time windows: GPS and fuel cover ``days`` days from ``start``;
payments reach back ``history_days`` more; progress reports reach back
months. ``lianwatch.sim.verify`` recomputes every deterministic rule from the
files and compares it with the labels (a test oracle).
"""

from .config import GenConfig, Summary
from .run import generate

__all__ = ["generate", "GenConfig", "Summary"]
