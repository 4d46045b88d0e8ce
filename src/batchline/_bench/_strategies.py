"""The strategies the bench compares, each the way its user would really write it.

Every strategy takes the same :class:`Workload` (invoice lines over a pre-seeded catalog) and
must leave the same database state: one transactions row per line, and per item the sum of
its quantities in inventory. Only the floor gets the lines already mapped; the others do their
own lookups by SKU, as a real load has to.

``hand-written`` is the peer batchline has to beat (issue 12): what an expert writes instead of
using batchline, straight on the driver. The floor is the same minus the lookups, the Python
per line and the commits between chunks.

Modules: ``_sqlalchemy_strategies`` (sequential, the seed's batch, pandas, SQLAlchemy Core),
``_driver_strategies`` (hand-written, the floor), ``_batchline_strategies`` (batchline);
this one names them and hands them on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from .._errors import ConfigError
from ._batchline_strategies import batchline_default, batchline_tuned, batchline_values
from ._driver_strategies import floor, hand_written
from ._sqlalchemy_strategies import (
    increment_statement,
    pandas_to_sql,
    seed_batch,
    sequential,
    sqlalchemy_core,
)
from ._workload import Workload

__all__ = [
    "STRATEGIES",
    "Strategy",
    "batchline_default",
    "batchline_tuned",
    "floor",
    "hand_written",
    "increment_statement",
    "pandas_to_sql",
    "seed_batch",
    "sequential",
    "sqlalchemy_core",
    "strategy_named",
]

StrategyFn = Callable[[sa.Engine, Workload], None]


@dataclass(frozen=True)
class Strategy:
    """A named way of loading the workload.

    A strategy with ``sample`` (a multiple of ``--sample``) is slow per line and runs on that
    many first lines only; its records/s come from the sample.
    """

    name: str
    run: StrategyFn
    sample: int = 0
    imports: tuple[str, ...] = ()  # modules to import before timing (not part of the load)

    @property
    def sampled(self) -> bool:
        return self.sample > 0

    @property
    def description(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("sequential", sequential, sample=1),
    Strategy("seed-batch", seed_batch, sample=2),
    Strategy("pandas", pandas_to_sql, imports=("pandas",)),
    Strategy("sqlalchemy", sqlalchemy_core),
    Strategy("hand-written", hand_written),
    Strategy("batchline", batchline_default),
    Strategy("batchline-tuned", batchline_tuned),
    Strategy("batchline-values", batchline_values),
    Strategy("floor", floor),
)


def strategy_named(name: str) -> Strategy:
    """The strategy called ``name``; a clear error listing the choices otherwise."""
    for strategy in STRATEGIES:
        if strategy.name == name:
            return strategy
    choices = ", ".join(s.name for s in STRATEGIES)
    raise ConfigError(f"no strategy {name!r}; choose from {choices}")
