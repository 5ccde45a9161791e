"""One exception hierarchy for fedcredit.

Every error raised on purpose by fedcredit derives from :class:`FedcreditError`.
Where callers would naturally catch a builtin, the class also subclasses it
(``ConfigError`` is a ``ValueError``, ``PeerError`` a ``ConnectionError``...).
"""

from __future__ import annotations

__all__ = [
    "FedcreditError",
    "ConfigError",
    "DataError",
    "ProtocolError",
    "PeerError",
    "PolicyError",
    "DecryptionError",
    "NotFittedError",
    "JobCancelled",
    "ComputeError",
    "StateLocked",
]


class FedcreditError(Exception):
    """Base class of every fedcredit error."""


class ConfigError(FedcreditError, ValueError):
    """A config file or parameter is invalid.

    ``problems`` lists every problem found (one config error names them all),
    each already carrying the file and key.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [message])
        super().__init__(message)


class DataError(FedcreditError, ValueError):
    """A party's table is unusable (missing file/column, duplicate ids, ...).

    The message always names the file and, where one is at fault, the column.
    """


class ProtocolError(FedcreditError):
    """A peer message violates the protocol (wrong stage, tag, type or shape)."""


class PeerError(FedcreditError, ConnectionError):
    """A peer is unreachable, timed out, disconnected or refused us.

    ``peer`` names the party at fault.
    """

    def __init__(self, message: str, peer: str | None = None):
        self.peer = peer
        super().__init__(message)


class PolicyError(FedcreditError, PermissionError):
    """A party's policy refuses a job, a request or a peer; carries the reason."""


class DecryptionError(FedcreditError):
    """Decryption or an integrity check failed.

    Deliberately opaque: it never says which check failed and never carries
    plaintext (pyca's ``InvalidToken`` is the model).
    """

    def __init__(self, message: str = "decryption failed"):
        super().__init__(message)


class NotFittedError(FedcreditError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class JobCancelled(FedcreditError):
    """The job was cancelled by its initiator or an operator."""


class ComputeError(FedcreditError, RuntimeError):
    """The party's compute backend could not run a step's heavy work.

    Raised when a distributed engine is missing, unreachable, or its workers kept
    failing after the configured retries; the message gives the reason (never key
    material or plaintext). The step fails cleanly and the party keeps serving.
    """


class StateLocked(FedcreditError):
    """Another process already runs a party on this state directory (exit code 8 of ``party serve``)."""
