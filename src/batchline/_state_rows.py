"""What the state tables' rows read back as (:class:`JobState`, :class:`DeadLetter`), and
the encodings written into them: JSON for payloads and specs, the ledger's key hash, times.

Kept apart from the tables and the statements (``_state_tables``, ``_state``) because the
public API hands these out (``DeadLetters.jobs()``, ``.list()``), and the CLI renders them,
without touching a database.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from ._payload import read_payload
from ._sizes import TRUNCATED

__all__ = ["DeadLetter", "JobState", "key_hash", "now_iso", "to_json"]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)  # anything else is kept as its text, never dropped


#: One encoder for every payload and key: ``json.dumps`` with ``default=`` builds a new
#: encoder on each call (about 60% of a ledger key's hash); the text is the same.
_ENCODER = json.JSONEncoder(default=_json_default, ensure_ascii=False)


def to_json(value: Any) -> str:
    """JSON for payloads; what JSON cannot hold is stored as text rather than lost. Text
    with a lone surrogate (no UTF-8 form: no database takes it) is written escaped."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError):
        text = json.dumps(str(value), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(json.loads(text))  # (ensure_ascii: "\\ud800", as read)
    return text


#: What ``_ENCODER`` writes a string as (``ensure_ascii=False``): the same C function.
_encode_str = json.encoder.encode_basestring
_sha256 = hashlib.sha256


def key_hash(key: Any) -> str:
    """A fixed-width ledger key for any idempotency key value (tuples, strings, numbers).

    The hash of the key's JSON (``to_json``), which the ledger has held since its first
    release, so it must not change. A tuple of strings and integers (a consumer's
    ``("amqp", message_id)``, most keys) is written here as the encoder writes it, in a
    third of the time: the encoder's Python layers were most of a key's cost.
    """
    if type(key) is tuple:
        if len(key) == 2 and type(key[0]) is str:
            hashed = _tagged_hash(key[0], key[1])
            if hashed is not None:
                return hashed
        parts = []
        for part in key:
            kind = type(part)
            if kind is str:
                parts.append(_encode_str(part))
            elif kind is int:
                parts.append(int.__repr__(part))
            else:
                break
        else:
            try:
                return _sha256(("[" + ", ".join(parts) + "]").encode()).hexdigest()
            except UnicodeEncodeError:
                pass  # a lone surrogate, which to_json writes escaped
    return _sha256(to_json(key).encode()).hexdigest()


#: The hash state after ``["<tag>", `` for each first part of a two-part key seen (a
#: consumer's ``"amqp"``, a file's name): a key of that shape then hashes only the rest.
_TAGS: dict[str, Any] = {}
_TAGS_MAX = 256  # past this many, tags are not kept (the hash is the same either way)


def _tagged_hash(tag: str, value: Any) -> str | None:
    """``key_hash((tag, value))`` for a string or integer ``value``, from ``tag``'s kept
    hash state; None for another value, or text with a lone surrogate (which ``to_json``
    writes escaped)."""
    kind = type(value)
    if kind is str:
        rest = _encode_str(value) + "]"
    elif kind is int:
        rest = int.__repr__(value) + "]"
    else:
        return None
    state = _TAGS.get(tag)
    try:
        if state is None:
            state = _sha256(("[" + _encode_str(tag) + ", ").encode())
            if len(_TAGS) < _TAGS_MAX:
                _TAGS[tag] = state
        hashed = state.copy()
        hashed.update(rest.encode())
    except UnicodeEncodeError:
        return None
    return hashed.hexdigest()


@dataclass(frozen=True, slots=True)
class JobState:
    name: str
    fingerprint: str | None
    position: int
    processed: int
    failed: int
    duplicates: int
    chunks: int
    status: str
    spec: str | None
    started_at: str
    updated_at: str
    finished_at: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    job: str
    position: int
    line: int
    stage: str
    error_class: str
    message: str
    payload: str
    attempts: int
    created_at: str

    @property
    def record(self) -> Any:
        """The record as stored: whole (``payload_mode`` ``"full"``, redacted fields
        blanked), only its key fields (``"keys"``), or None (``"none"``)."""
        return read_payload(self.payload).record

    @property
    def payload_mode(self) -> str:
        """What the letter keeps of its record: ``"full"``, ``"keys"`` or ``"none"``."""
        return read_payload(self.payload).mode

    @property
    def redacted(self) -> tuple[str, ...]:
        """The fields whose values were replaced by ``[redacted]``."""
        return read_payload(self.payload).redacted

    @property
    def replayable(self) -> bool:
        """Whether the letter holds its record as read, which replay needs."""
        return read_payload(self.payload).replayable

    @property
    def truncated(self) -> bool:
        """Whether the payload was too large to store and holds only its head (the record
        is then ``{"batchline_truncated": {"bytes": …, "head": …}}``; it cannot be replayed)."""
        return self.payload.startswith('{"' + TRUNCATED + '"')

    def to_dict(self) -> dict[str, Any]:
        stored = read_payload(self.payload)
        return {
            "id": self.id,
            "job": self.job,
            "position": self.position,
            "line": self.line,
            "stage": self.stage,
            "error_class": self.error_class,
            "message": self.message,
            "record": stored.record,
            "payload_mode": stored.mode,
            "redacted": list(stored.redacted),
            "attempts": self.attempts,
            "created_at": self.created_at,
        }
