"""Detectors: one per subject family. See :mod:`lianwatch.detectors.base`.

=================================  ===========================================
module                             rules
=================================  ===========================================
:mod:`.fuel`                       ``fuel.*`` (vehicle: GPS track × fuel card)
:mod:`.payments`                   ``payment.*`` except ``payment.unusual``
:mod:`.unusual`                    ``payment.unusual`` (river, per village)
:mod:`.projects`                   ``project.*`` (reports and the clock)
=================================  ===========================================
"""

from __future__ import annotations

from .base import Ctx, Detector, DictStore, SetAside, Store

__all__ = ["default_detectors", "Ctx", "Detector", "DictStore", "SetAside", "Store"]


def default_detectors() -> list[Detector]:
    """A fresh instance of every detector, in a fixed order."""
    from .fuel import FuelDetector
    from .payments import PaymentDetector
    from .projects import ProjectDetector
    from .unusual import UnusualPaymentDetector

    return [FuelDetector(), PaymentDetector(), UnusualPaymentDetector(), ProjectDetector()]
