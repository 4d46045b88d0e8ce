"""The demo's mapping of an invoice line: the product found by SKU and by its free-text,
often misspelt description (rapidfuzz), or created through the catalog ``Lookup``.

Part of the invoice workload (the demo runs it; ``batchline.cli._demo_run``), kept with the
lines and the catalog it matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from rapidfuzz import fuzz, process, utils

from .._out import Out
from .._writes import Lookup

__all__ = ["FUZZY_CUTOFF", "SKU_AGREEMENT", "CatalogMatcher", "make_map", "parse_line"]

SKU_AGREEMENT = 60  # the description must look at least this much like the SKU's product
FUZZY_CUTOFF = 85  # a description matches a catalog name from this score up
_NUMBERS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class CatalogMatcher:
    """Finds the product an invoice line means, and learns the products created on the way.

    The line's SKU is trusted when the catalog has it and the description agrees with that
    product's name; otherwise the description is fuzzy-matched against every name (cached
    per description); when nothing matches, the line names a new product (created through
    the ``Lookup`` at flush time, and added here so later lines find it).
    """

    def __init__(self, products: Iterable[tuple[str, str]]) -> None:
        self._name_by_sku: dict[str, str] = {}  # sku -> processed name
        self._display: dict[str, str] = {}  # sku -> name as created
        self._sku_by_name: dict[str, str] = {}  # processed name -> sku
        self._names: list[str] = []
        self._skus: list[str] = []
        self._fuzzy: dict[str, str | None] = {}
        self.by_sku = self.by_description = self.created = 0
        for sku, name in products:
            self.add(sku, name)

    def add(self, sku: str, name: str) -> None:
        processed = utils.default_process(name)
        self._name_by_sku[sku] = processed
        self._display[sku] = name
        self._sku_by_name.setdefault(processed, sku)
        self._names.append(processed)
        self._skus.append(sku)
        self._fuzzy.clear()  # a description that matched nothing may match the newcomer

    def _closest(self, wanted: str) -> str | None:
        """The SKU of the most similar name whose numbers (sizes, models) are the same."""
        numbers = _NUMBERS.findall(wanted)
        for _, _, index in process.extract(
            wanted,
            self._names,
            scorer=fuzz.ratio,
            processor=None,
            score_cutoff=FUZZY_CUTOFF,
            limit=5,
        ):
            if _NUMBERS.findall(self._names[index]) == numbers:
                return self._skus[index]
        return None

    def match(self, sku: str, description: str) -> tuple[str, str]:
        """(sku, name) of the product the line means; new products are learnt.

        Raises:
            ValueError: the line has neither a usable SKU nor a description.
        """
        sku = (sku or "").strip()
        wanted = utils.default_process(description or "")
        known = self._name_by_sku.get(sku)
        if known is not None and (not wanted or fuzz.ratio(wanted, known) >= SKU_AGREEMENT):
            self.by_sku += 1
            return sku, self._display[sku]
        if wanted:
            found = self._sku_by_name.get(wanted)
            if found is None:
                if wanted not in self._fuzzy:
                    self._fuzzy[wanted] = self._closest(wanted)
                found = self._fuzzy[wanted]
            if found is not None:
                self.by_description += 1
                return found, self._display[found]
        if not sku or not wanted:
            raise ValueError("no SKU or description: no product can be found or created")
        self.created += 1
        name = " ".join(description.split())
        self.add(sku, name)
        return sku, name


def parse_line(line: Mapping[str, Any]) -> tuple[int, Decimal]:
    try:
        quantity = int(line["quantity"])
    except (TypeError, ValueError):
        raise ValueError(f"quantity is not a whole number: {line['quantity']!r}") from None
    try:
        price = Decimal(str(line["unit_price"]))
    except InvalidOperation:
        raise ValueError(f"unit price is not a number: {line['unit_price']!r}") from None
    return quantity, price


def make_map(matcher: CatalogMatcher, catalog: Lookup) -> Callable[[dict[str, Any], Out], None]:
    """The demo's mapping: match the product, emit the transaction and the inventory increment."""

    def map_line(line: dict[str, Any], out: Out) -> None:
        sku, name = matcher.match(line["sku"], line["description"])
        quantity, price = parse_line(line)
        item = catalog.ref(sku=sku, name=name)
        out.insert(
            "transactions",
            {
                "invoice_id": line["invoice_id"],
                "line_no": line["line_no"],
                "item_id": item,
                "quantity": quantity,
                "unit_cost": price,
            },
        )
        out.increment("inventory", {"item_id": item, "quantity": quantity})

    return map_line
