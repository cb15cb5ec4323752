"""The engine layer: the one loop (:mod:`.loop`) and the detector framework it
runs (:mod:`.detector`), over the contract's records (:mod:`.records`).

Layers point one way: the contract (:mod:`lianwatch.models`) ← this package ←
the concrete detectors (:mod:`lianwatch.detectors`), which import the framework
from here; nothing here imports a detector.
"""

from .detector import Ctx, Detector, DictStore, Event, SetAside, Step, Store
from .loop import Engine, HotEntry

__all__ = ["Engine", "HotEntry", "Ctx", "Detector", "DictStore", "Event", "SetAside", "Step",
           "Store"]
