"""Errors the engine raises, split by who can fix them."""

from __future__ import annotations


class BeamtuiError(Exception):
    """Base class: every engine error carries a one-line, user-facing message."""


class ConfigError(BeamtuiError):
    """The user's input is wrong (bad setting, missing key, unreachable endpoint). Exit code 2."""


class TooLong(ConfigError):
    """A prompt with the answer asked for does not fit in what the backend holds per sequence. Eval records it
    against the one problem; a single run stops on it."""


class BackendError(BeamtuiError):
    """A backend failed a request.

    `transient` errors (429, 5xx, timeouts, dropped connections, garbled bodies) are worth retrying;
    `retry_after` is the server's Retry-After hint in seconds, when it gave one.
    """

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.status = status
        self.endpoint: str | None = None  # which of several endpoints failed, when there are several


class RunFailed(BeamtuiError):
    """A run started but could not finish (a whole block failed, the backend died). Exit code 1."""


def redact(text: str, secret: str | None) -> str:
    """A server may quote our request back, key included; nothing we print or write may carry it."""
    return text.replace(secret, "***") if secret else text
