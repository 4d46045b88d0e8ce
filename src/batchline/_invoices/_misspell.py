"""Realistic typos in product descriptions: dropped, doubled or swapped letters, abbreviations
and case changes, as people really type them on invoices.

Why: the demo matches each description to the catalog by fuzzy matching, which only shows its
worth when about half of the descriptions are not the catalog's names to the letter.
"""

from __future__ import annotations

import functools
import random

__all__ = ["misspell"]

# Abbreviations people really type on invoices; applied to whole words only.
_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("Extra Large", "XL"),
    ("Large", "Lg"),
    ("Medium", "Med"),
    ("Small", "Sm"),
    ("Stainless Steel", "SS"),
    ("Galvanized", "Galv"),
    ("Box of", "Bx"),
    ("Pack of", "Pk"),
    ("Litre", "Ltr"),
    ("Degree", "Deg"),
    ("Black", "Blk"),
    ("White", "Wht"),
    ("Heavy Duty", "HD"),
    ("Assorted", "Asst"),
    ("Electrical", "Elec"),
    ("Compression", "Comp"),
)


@functools.lru_cache(maxsize=16384)
def _letter_positions(text: str) -> tuple[int, ...]:
    """Indexes inside alphabetic words of 4+ letters (not first letter): safe to garble."""
    positions: list[int] = []
    start = 0
    for word in text.split(" "):
        if len(word) >= 4 and word.isalpha():
            positions.extend(range(start + 1, start + len(word)))
        start += len(word) + 1
    return tuple(positions)


@functools.lru_cache(maxsize=16384)
def _abbreviations_in(text: str) -> tuple[tuple[str, str], ...]:
    padded = f" {text} "
    return tuple((long, short) for long, short in _ABBREVIATIONS if f" {long} " in padded)


@functools.lru_cache(maxsize=16384)
def _capitalised_words(text: str) -> tuple[int, ...]:
    return tuple(i for i, word in enumerate(text.split(" ")) if word != word.lower())


def _misspell_once(text: str, rng: random.Random) -> str:
    op = rng.choice(("abbreviate", "drop", "swap", "double", "case"))
    if op == "abbreviate":
        found = _abbreviations_in(text)
        if found:
            long, short = rng.choice(found)
            return f" {text} ".replace(f" {long} ", f" {short} ", 1)[1:-1]
        op = "drop"
    if op == "case":
        kind = rng.randrange(3)
        if kind == 0:
            return text.lower()
        if kind == 1:
            return text.upper()
        capitalised = _capitalised_words(text)
        if not capitalised:
            return text.upper()
        words = text.split(" ")
        i = rng.choice(capitalised)
        words[i] = words[i].lower()
        return " ".join(words)
    positions = _letter_positions(text)
    if not positions:
        return text.lower()
    i = rng.choice(positions)
    if op == "drop":
        return text[:i] + text[i + 1 :]
    if op == "double":
        return text[:i] + text[i] + text[i:]
    # swap with the next letter when it is a different letter of the same word
    if i + 1 < len(text) and text[i + 1].isalpha() and text[i + 1] != text[i]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + text[i + 1 :]


def misspell(text: str, rng: random.Random) -> str:
    """One or two realistic typos; always returns something different from ``text``."""
    out = text
    for _ in range(2 if rng.random() < 0.3 else 1):
        out = _misspell_once(out, rng)
    for _ in range(20):  # two typos can cancel out; a lower-case name has no case to change
        if out != text:
            return out
        out = _misspell_once(text, rng)
    return out
