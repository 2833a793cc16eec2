"""The exceptions tickpipe raises on purpose.

    TickpipeError
    ├── SettingsError        a variable has a bad value (raised at start-up, names the variable)
    ├── DecodeError          an upstream or Kafka message is not a valid event (names the field)
    ├── ServiceStartError    an embedded or configured service did not answer
    ├── UpstreamAuthError    Alpaca refused our keys (402): retrying cannot help
    └── MissingExtraError    an optional extra (e.g. ``embedded``) is not installed

Callers catch at the level they need; everything else is a bug and propagates.
"""

from __future__ import annotations


class TickpipeError(Exception):
    """Base of every error tickpipe raises deliberately."""


class SettingsError(TickpipeError):
    """A configuration value is missing or malformed."""


class DecodeError(TickpipeError, ValueError):
    """A message could not be turned into an event.

    ``field`` names the offending field (``"bp"``, ``"t"``, or ``"$"`` for the
    whole message) so a dead letter says exactly what was wrong.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ServiceStartError(TickpipeError):
    """A backing service (PostgreSQL, Redis, Kafka) could not be started or reached."""


class UpstreamAuthError(TickpipeError):
    """The upstream refused the credentials; reconnecting would only be refused again."""


class MissingExtraError(TickpipeError):
    """An optional dependency group is needed for this and is not installed."""
