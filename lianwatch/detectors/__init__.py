"""Detectors: one per subject family, on the framework of :mod:`lianwatch.engine.detector`;
every one passes the conformance suite of :mod:`.checks`.

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

from lianwatch.engine.detector import Detector

__all__ = ["default_detectors"]


def default_detectors() -> list[Detector]:
    """A fresh instance of every detector, in a fixed order."""
    from .fuel import FuelDetector
    from .payments import PaymentDetector
    from .projects import ProjectDetector
    from .unusual import UnusualPaymentDetector

    return [FuelDetector(), PaymentDetector(), UnusualPaymentDetector(), ProjectDetector()]
