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

__all__ = ["default_detectors", "implemented_rules"]


def default_detectors() -> list[Detector]:
    """A fresh instance of every detector, in a fixed order."""
    from .fuel import FuelDetector
    from .payments import PaymentDetector
    from .projects import ProjectDetector
    from .unusual import UnusualPaymentDetector

    return [FuelDetector(), PaymentDetector(), UnusualPaymentDetector(), ProjectDetector()]


def implemented_rules() -> tuple[str, ...]:
    """The catalogue rules some detector of :func:`default_detectors` raises, in
    catalogue order (the demo scores and the incident tests cover these)."""
    from lianwatch.rules import RULES

    raised = {r for d in default_detectors() for r in d.rules}
    unknown = raised - set(RULES)
    if unknown:
        raise ValueError(f"detectors raise rules not in the catalogue: {sorted(unknown)}")
    return tuple(r for r in RULES if r in raised)
