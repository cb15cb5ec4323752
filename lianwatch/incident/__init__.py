"""Incident reconstruction for investigators: fetch an alert's records from the
archive (or a contract directory), replay them through the same detectors, say
whether the alert is reproduced, and write a self-contained HTML case page."""

from .reconstruct import Reconstruction, reconstruct
from .sources import ArchiveSource, DirSource

__all__ = ["reconstruct", "Reconstruction", "ArchiveSource", "DirSource"]
