"""What a dead letter keeps of its record: all of it, its key fields, or nothing; redacted.

A dead-letter table is often read by more people than the data, so a ``Pipeline`` can limit
what each letter stores (``dead_letter_payload``) and blank named fields (``redact``). The
letter's message is scrubbed to match, because a database error can echo a value (MySQL's
``Duplicate entry 'x@y.com'``, PostgreSQL's ``invalid input syntax for type integer: "x"``):
the values the letter does not keep are replaced there by ``[redacted]`` wherever their text
appears as a whole word: a redacted field's value always, and with ``keys``/``none`` every
other value of three characters or more (a "0" is everywhere in messages: "CHECK (qty > 0)").
The message keeps the database's wording otherwise, so it may lose a word that happens to
equal a withheld value. A value is found by its text (a string as it is, stripped or as
``repr`` shows it; a number or date as ``str`` shows it): a database that shows it otherwise
(``1.5`` stored from ``"1.50"``) is not caught.

Which mode a letter holds is recorded inside its payload, so the state tables' layout does
not change. A full, unredacted record is stored as before, as plain JSON; anything else is an
envelope marked with ``__batchline_payload__``::

    {"__batchline_payload__": "full", "record": {...}, "redacted": ["email"]}
    {"__batchline_payload__": "keys", "fields": {"id": 7}}
    {"__batchline_payload__": "none"}

Replay needs the record as it was read, so it refuses letters holding less (:func:`refusal`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import chain
from typing import Any

from ._errors import ConfigError
from ._items import Op
from ._writes import Ref, Write

__all__ = [
    "MARKER",
    "PAYLOAD_MODES",
    "REDACTED",
    "PayloadPolicy",
    "StoredPayload",
    "read_payload",
    "refusal",
]

MARKER = "__batchline_payload__"
REDACTED = "[redacted]"
PAYLOAD_MODES = ("full", "keys", "none")
_SHOWN_REFUSALS = 5
_SHORTEST = 3  # characters: shorter values are not scrubbed by keys/none (redact scrubs all)


@dataclass(frozen=True, slots=True)
class StoredPayload:
    """A letter's payload as read back: its mode, what it holds, which fields were blanked."""

    mode: str  # "full" | "keys" | "none"
    record: Any  # the record ("full"), its key fields ("keys"), or None ("none")
    redacted: tuple[str, ...] = ()

    @property
    def replayable(self) -> bool:
        """Whether this is the record as it was read, so loading it again means something."""
        return self.mode == "full" and not self.redacted


def read_payload(payload: str) -> StoredPayload:
    """Parse a stored payload: a plain record (``full``) or an envelope."""
    value = json.loads(payload)
    if isinstance(value, dict) and value.get(MARKER) in PAYLOAD_MODES:
        mode = value[MARKER]
        redacted = tuple(value.get("redacted") or ())
        if mode == "full":
            return StoredPayload(mode, value.get("record"), redacted)
        if mode == "keys":
            return StoredPayload(mode, value.get("fields") or {}, redacted)
        return StoredPayload(mode, None, redacted)
    return StoredPayload("full", value)


def _names(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value or ())
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{what}: field names must be non-empty strings, got {name!r}")
    return names


class PayloadPolicy:
    """How each dead letter's payload and message are built (``Pipeline``'s settings).

    ``full`` keeps the record (the default: replay needs it). ``keys`` keeps the record's
    top-level fields named in ``keys``. ``none`` keeps nothing but where and why. ``redact``
    names fields replaced by ``[redacted]`` at any depth of the record (a nested
    ``{"customer": {"email": ...}}`` too), in the payload and in the message.
    """

    __slots__ = ("keys", "mode", "redact")

    def __init__(
        self,
        mode: str = "full",
        redact: str | Sequence[str] | None = (),
        keys: str | Sequence[str] | None = (),
    ) -> None:
        if mode not in PAYLOAD_MODES:
            raise ConfigError(
                f"dead_letter_payload must be one of {', '.join(map(repr, PAYLOAD_MODES))}, "
                f"got {mode!r}"
            )
        self.mode = mode
        self.redact = frozenset(_names(redact, "redact"))
        self.keys = _names(keys, "dead_letter_keys")

    @classmethod
    def for_writes(
        cls,
        mode: str,
        redact: str | Sequence[str] | None,
        keys: str | Sequence[str] | None,
        writes: Iterable[Write],
    ) -> PayloadPolicy:
        """The policy of a pipeline: ``keys`` defaults to the writes' declared key columns
        (Upsert, Increment and Delete ``key``), in order, without repeats."""
        if keys is not None and mode != "keys":
            raise ConfigError("dead_letter_keys only applies with dead_letter_payload='keys'")
        if keys is None:
            declared: list[str] = []
            for write in writes:
                declared.extend(c for c in write.key_columns if c not in declared)
            keys = declared
        policy = cls(mode, redact, keys)
        if mode == "keys" and not policy.keys:
            raise ConfigError(
                "dead_letter_payload='keys' needs key fields, and the writes declare none "
                "(an Insert has no key): name the record's identifying fields with "
                "dead_letter_keys=[...]"
            )
        return policy

    @property
    def keeps_all(self) -> bool:
        """The default: the record is stored as it is and the message as it came."""
        return self.mode == "full" and not self.redact

    def letter(self, record: Any, message: str, ops: Sequence[Op] = ()) -> tuple[str, Any]:
        """The message and the payload (JSON-able) a dead letter of ``record`` (whose rows
        were ``ops``) stores."""
        if self.keeps_all:
            return message, _plain(record)
        found: list[str] = []
        if self.mode == "full":
            if isinstance(record, str):
                # Text that did not parse (stage read) cannot be redacted field by field.
                return message, {MARKER: "none"}
            kept = self._redacted(record, found)
            withheld = set(self._redacted_texts(record, ops))
            if not found:
                return scrub(message, withheld), _plain(record)
            payload = {MARKER: "full", "record": kept, "redacted": found}
            return scrub(message, withheld), payload
        # Every value the letter does not keep, but not the very short ones: a "0" or "12"
        # says little and is everywhere in database messages ("CHECK (qty > 0)").
        everything = {
            t
            for t in chain(_texts(record), *(_texts(values) for _, _, values in ops))
            if len(t.strip()) >= _SHORTEST
        }
        if self.mode == "none":
            return scrub(message, everything), {MARKER: "none"}
        fields = {}
        if isinstance(record, dict):
            fields = {k: record[k] for k in self.keys if k in record}
        kept = self._redacted(fields, found)
        allowed = set(_texts(kept)) - set(self._redacted_texts(record, ops))
        payload = {MARKER: "keys", "fields": kept}
        if found:
            payload["redacted"] = found
        return scrub(message, everything - allowed), payload

    # -- helpers ------------------------------------------------------------------------------
    def _redacted(self, value: Any, found: list[str]) -> Any:
        """``value`` with the redacted fields' values replaced, at any depth (a copy)."""
        if not self.redact:
            return value
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k in self.redact:
                    out[k] = REDACTED
                    if k not in found:
                        found.append(k)
                else:
                    out[k] = self._redacted(v, found)
            return out
        if isinstance(value, list):
            return [self._redacted(v, found) for v in value]
        return value

    def _redacted_texts(self, record: Any, ops: Sequence[Op]) -> Iterator[str]:
        """The texts of the redacted fields' values: in the record and in its writes."""
        if not self.redact:
            return
        yield from _field_texts(record, self.redact)
        for _, columns, values in ops:
            for column, value in zip(columns, values):
                if column in self.redact:
                    yield from _texts(value)
                elif type(value) is Ref:
                    yield from _ref_texts(value, self.redact)


def _plain(record: Any) -> Any:
    """A full record as stored: itself, unless it could be mistaken for an envelope."""
    if isinstance(record, dict) and MARKER in record:
        return {MARKER: "full", "record": record}
    return record


def scrub(message: str, texts: Iterable[str]) -> str:
    """``message`` with each of ``texts`` that appears as a whole word replaced by the marker."""
    words = sorted({t for t in texts if t.strip()}, key=len, reverse=True)
    if not words or not message:
        return message
    pattern = "|".join(_word(t) for t in words)
    return re.sub(pattern, REDACTED, message)


def _word(text: str) -> str:
    before = r"(?<!\w)" if re.match(r"\w", text[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", text[-1]) else ""
    return before + re.escape(text) + after


def _texts(value: Any) -> Iterator[str]:
    """Every scalar value inside ``value`` as the texts a message could show it as."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, dict):
        for v in value.values():
            yield from _texts(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _texts(v)
    elif type(value) is Ref:
        yield from _texts(value.key)
        yield from _texts(value.values)
    elif isinstance(value, str):
        yield value
        yield value.strip()
        yield repr(value)[1:-1]  # as ``{value!r}`` shows it, escapes and all
    elif isinstance(value, (int, float, Decimal)):
        yield str(value)
    elif isinstance(value, date):
        yield str(value)
        yield value.isoformat()
    elif isinstance(value, (bytes, bytearray, memoryview)):
        yield bytes(value).hex()
    else:
        yield str(value)


def _field_texts(value: Any, names: frozenset[str]) -> Iterator[str]:
    """The texts of the values under any of ``names``, at any depth of ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in names:
                yield from _texts(v)
            else:
                yield from _field_texts(v, names)
    elif isinstance(value, list):
        for v in value:
            yield from _field_texts(v, names)


def _ref_texts(ref: Ref, names: frozenset[str]) -> Iterator[str]:
    for column, value in zip(ref.lookup.key, ref.key):
        if column in names:
            yield from _texts(value)
    yield from _field_texts(ref.values or {}, names)


def refusal(letters: Sequence[Any]) -> str:
    """Why ``letters`` (dead letters not holding their record as read) were not replayed."""
    reasons = []
    for letter in letters[:_SHOWN_REFUSALS]:
        if letter.payload_mode == "keys":
            holds = "holds only keys (dead_letter_payload='keys')"
        elif letter.payload_mode == "none":
            holds = "holds no record (dead_letter_payload='none')"
        else:
            names = ", ".join(letter.redacted)
            holds = f"has {names} redacted (redact={list(letter.redacted)!r})"
        reasons.append(
            f"letter {letter.id} {holds}; it cannot be replayed: the record as read was not "
            f"kept, so load line {letter.line} of its source again"
        )
    more = len(letters) - len(reasons)
    if more > 0:
        reasons.append(f"and {more} more")
    count = f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}"
    return f"{count} not replayed: " + "; ".join(reasons)
