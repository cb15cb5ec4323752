"""The one boundary where Kafka client errors become :class:`lianwatch.errors.BrokerError`.

Two clients talk to the broker: aiokafka (the producer, the worker's bulk
input, Faust underneath) and kafka-python (topic administration, the
reference follower). Their errors — and the plain ``OSError`` /
``TimeoutError`` a dead socket gives — are converted here and nowhere else
(httpx ``map_httpcore_exceptions`` style): code in :mod:`lianwatch.streams`
wraps its broker calls in :func:`broker_errors` and catches ``BrokerError``.
``transient`` says whether a retry may help (the client's ``retriable`` flag,
or a connection that could not be made).

>>> from lianwatch.errors import BrokerError
>>> try:
...     with broker_errors("sending"):
...         raise ConnectionRefusedError(111, "Connection refused")
... except BrokerError as exc:
...     print(exc, exc.transient)
Kafka: sending: ConnectionRefusedError: [Errno 111] Connection refused True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lianwatch.errors import BrokerError

__all__ = ["broker_errors", "to_broker_error", "is_broker_error", "already_exists",
           "BrokerError"]


def _client_errors() -> tuple[type[BaseException], ...]:
    out: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        from aiokafka.errors import KafkaError as AIOKafkaError

        out.append(AIOKafkaError)
    except ImportError:  # pragma: no cover - a dependency
        pass
    try:
        from kafka.errors import KafkaError

        out.append(KafkaError)
    except ImportError:  # pragma: no cover - a dependency
        pass
    return tuple(out)


_ERRORS: tuple[type[BaseException], ...] | None = None


def _errors() -> tuple[type[BaseException], ...]:
    global _ERRORS
    if _ERRORS is None:
        _ERRORS = _client_errors()
    return _ERRORS


def _transient(exc: BaseException) -> bool:
    retriable = getattr(exc, "retriable", None)
    if retriable is not None:
        return bool(retriable) or type(exc).__name__ in (
            "KafkaConnectionError", "NoBrokersAvailable", "KafkaTimeoutError",
            "UnknownTopicOrPartitionError", "NodeNotReadyError", "RequestTimedOutError")
    return isinstance(exc, (OSError, TimeoutError))


def to_broker_error(exc: BaseException, what: str) -> BrokerError:
    """``exc`` (a Kafka client or socket error) as a BrokerError saying what failed."""
    if isinstance(exc, BrokerError):
        return exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = f"Kafka: {what}: {type(exc).__name__}" + (f": {text[:300]}" if text else "")
    err = BrokerError(msg, transient=_transient(exc))
    err.__cause__ = exc
    return err


def is_broker_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one the broker boundary converts."""
    return isinstance(exc, (BrokerError, *_errors()))


def already_exists(err: BrokerError) -> bool:
    """The broker refused to create a topic another client has just created."""
    return type(err.__cause__).__name__ == "TopicAlreadyExistsError"


@contextmanager
def broker_errors(what: str) -> Iterator[None]:
    """Run a block of broker calls; their client errors leave it as BrokerError."""
    try:
        yield
    except BrokerError:
        raise
    except _errors() as exc:
        raise to_broker_error(exc, what) from exc
