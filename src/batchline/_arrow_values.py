"""Small Arrow values (a null, a text, a set of words) made without converting Python objects.

Why: ``pa.scalar(...)`` and ``pa.array([...])`` of Python values first ask whether the value
is a pandas object, and that question imports pandas when it is installed: a quarter of a
second, once per process, in a load that may take two. The bulk path's compute calls use
these instead, so a CSV load never imports pandas (``tests/test_arrow_values.py`` checks it
in a fresh process).
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from typing import Any

__all__ = ["bool_scalar", "null_of", "text_array", "text_scalar"]


def null_of(t: Any) -> Any:
    """The null scalar of Arrow type ``t``."""
    import pyarrow as pa

    return pa.nulls(1, t)[0]


def bool_scalar(value: bool) -> Any:
    """``True`` or ``False`` as an Arrow boolean scalar."""
    import pyarrow as pa

    bits = pa.py_buffer(b"\x01" if value else b"\x00")
    return pa.Array.from_buffers(pa.bool_(), 1, [None, bits])[0]


def text_array(words: Sequence[str], t: Any = None) -> Any:
    """``words`` as an Arrow ``string`` (or ``t``: ``large_string``) array, built over
    buffers of their UTF-8 bytes and offsets."""
    import pyarrow as pa

    t = pa.string() if t is None else t
    encoded = [w.encode() for w in words]
    offsets = array.array("q" if pa.types.is_large_string(t) else "i", [0])
    for word in encoded:
        offsets.append(offsets[-1] + len(word))
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(t, len(words), [None, pa.py_buffer(offsets), data])


def text_scalar(word: str, t: Any = None) -> Any:
    """``word`` as an Arrow ``string`` (or ``t``) scalar."""
    return text_array([word], t)[0]
