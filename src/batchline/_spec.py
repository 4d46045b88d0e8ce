"""What a job's stored load spec holds it to when the job is run again.

``Pipeline.run(spec=...)`` stores a description of the load with the job (``batchline load``
stores its options: table, mode, key, columns, column types...). A later run of the same job
resumes it, or finds it finished and does nothing; either way the caller expects the job's
load. A run that asks for another one (another table, an upsert instead of an insert, other
keys) must be refused, not resumed into the old load or answered with "0 processed".

So the two specs are compared key by key, except for the keys that only say how the records
are read and flushed, or how much of a failed record its dead letter keeps (``LOOSE_KEYS``):
none of them changes what lands in the tables. The file is compared only when no fingerprint
guards the source (standard input): otherwise the fingerprint check says more than the path
does.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from ._state_rows import to_json

__all__ = ["LOOSE_KEYS", "spec_differences"]

LOOSE_KEYS = frozenset(
    {
        "file",
        "format",
        "chunk_size",
        "fallback",
        "dead_letter_payload",
        "dead_letter_keys",
        "redact",
        "broker_state",
    }
)
"""Spec keys a job may be run again with different values (how, not what, it loads;
``broker_state``: a consumer's last observed lag, written while it runs)."""


def spec_differences(
    started: Mapping[str, Any],
    given: Mapping[str, Any],
    *,
    fingerprinted: bool = True,
    ignore: Collection[str] = (),
) -> list[tuple[str, Any, Any]]:
    """``(key, started, given)`` for each key whose value differs, in the specs' key order.

    Args:
        started: the spec the job was started with (as stored: parsed JSON).
        given: the spec of this run; compared as JSON, so a tuple equals a list.
        fingerprinted: whether both runs' sources have a fingerprint (then ``file`` is loose).
        ignore: more keys to leave out.
    """
    now = json.loads(to_json(dict(given)))
    skip = set(LOOSE_KEYS) | set(ignore)
    if not fingerprinted:
        skip.discard("file")
    keys = [k for k in now if k not in skip]
    keys += [k for k in started if k not in skip and k not in now]
    return [
        (k, started.get(k), now.get(k))
        for k in keys
        if _value(started.get(k)) != _value(now.get(k))
    ]


def _value(value: Any) -> Any:
    """An empty value is no value: a key a spec lacks equals the same key left empty."""
    if value is None or (isinstance(value, (str, list, dict)) and not value):
        return None
    return value
