"""The project's exceptions: few, documented, with data on them.

    PersonalizerError
    ├── BadRequest       a client error; carries the JSON error ``code`` and an HTTP ``status`` (4xx)
    ├── DecodeError      a KV value that is not a valid v1 record (also a ``ValueError``); carries ``key``
    ├── Erased           a person's key holds the mark of an erasure, not their record; carries ``key``
    └── LimitError       a key, value or metadata over the Workers KV limits (also a ``ValueError``)

Whoever catches a ``DecodeError`` at the edge degrades to the next tier; an ``Erased`` serves the request as an
anonymous visitor's and clears the person's cookies; a ``BadRequest`` becomes a 4xx.
"""

from __future__ import annotations


class PersonalizerError(Exception):
    """Base of every error this project raises on purpose."""


class BadRequest(PersonalizerError):
    """The request cannot be answered as asked; maps to a 4xx with the JSON error shape."""

    def __init__(self, code: str, message: str, status: int = 400, allow: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.allow = allow


class DecodeError(PersonalizerError, ValueError):
    """A stored value is not a well-formed v1 record of the expected kind."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message if key is None else f"{key}: {message}")
        self.key = key


class Erased(PersonalizerError):
    """A person's key holds the mark ``personalizer erase`` leaves: they must be served as nobody."""

    def __init__(self, key: str | None = None) -> None:
        super().__init__(f"{key}: erased" if key else "erased")
        self.key = key


class LimitError(PersonalizerError, ValueError):
    """A key, value or metadata exceeds a Workers KV limit; nothing was written."""

    def __init__(self, message: str, key: str | None = None, size: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.size = size
