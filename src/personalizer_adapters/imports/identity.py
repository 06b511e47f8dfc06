"""People's ids from shops' exports: an email, a phone number or any other identifier that is not a plain id is
never stored or used as one. It becomes a stable pseudonymous id with a keyed hash:

    id = "h-" + hex(HMAC-SHA256(PZ_ID_KEY, normalised identifier))[:32]

normalised: surrounding spaces removed; an email (it has an ``@``) also lowercased. The key (``PZ_ID_KEY``, in
the environment or ``.dev.vars``; at least 16 characters) is the shop's secret: without it nobody can tell
whose id it is, and the shop's login code computes the same id for the signed-in shopper's ``pz_uid``
(``personalizer pseudonym EMAIL``, or the README's four lines of Python or JavaScript). Plain ids (letters,
digits, ``_ . : -``, at most 64) are kept as they are.
"""

from __future__ import annotations

import hashlib
import hmac

from personalizer.keys import is_valid_id

ID_KEY_ENV = "PZ_ID_KEY"
MIN_KEY = 16
PREFIX = "h-"


class NoIdKey(Exception):
    """Identifiers that need a pseudonym, and no key to make one."""


def needs_pseudonym(value: str) -> bool:
    """An email, or anything that is not a plain id (a phone number, a name, an over-long id)."""
    return "@" in value or not is_valid_id(value)


def pseudonym(identifier: str, key: str) -> str:
    """The pseudonymous id of ``identifier`` under ``key`` (see the module)."""
    text = identifier.strip()
    if "@" in text:
        text = text.lower()
    return PREFIX + hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


class People:
    """The ids of one build's inputs: plain ids kept, the others pseudonymised (counted, never printed)."""

    def __init__(self, key: str | None) -> None:
        if key is not None and len(key) < MIN_KEY:
            raise NoIdKey(f"{ID_KEY_ENV} must be at least {MIN_KEY} characters")
        self.key = key
        self.pseudonymised = 0
        self._memo: dict[str, str] = {}

    def id(self, raw: str, column: str) -> str:
        """The id to use for ``raw``; ``NoIdKey`` (naming the column, not the value) when it needs a key."""
        value = raw.strip()
        if not needs_pseudonym(value):
            return value
        known = self._memo.get(value)
        if known is not None:
            return known
        if self.key is None:
            kind = "an email" if "@" in value else "not a plain id (letters, digits, _ . : -, at most 64)"
            raise NoIdKey(f"the {column} column holds {kind}: set {ID_KEY_ENV} (a secret of at least {MIN_KEY} "
                          "characters) to turn such identifiers into pseudonymous ids")
        self.pseudonymised += 1
        made = self._memo[value] = pseudonym(value, self.key)
        return made
