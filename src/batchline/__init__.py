"""batchline: fast, failure-tolerant batched database loading.

Collect each record's writes, flush them as set-based statements in chunks, isolate the
bad records (bisect) into a dead-letter table, and checkpoint so a crashed run resumes
exactly where it stopped. See README.md and DESIGN.md.
"""

from __future__ import annotations

import logging

from ._async import AsyncConsumer
from ._dead_letters import DeadLetters
from ._errors import (
    BatchlineError,
    ConfigError,
    DatabaseError,
    FatalDatabaseError,
    JobLocked,
    JobSpecMismatch,
    ResumeMismatch,
    SourceError,
    TransientExhausted,
)
from ._load import load
from ._out import Out
from ._pipeline import Pipeline
from ._result import FailedItem, Result
from ._retry import RetryPolicy
from ._sources import FileSource, ReadFailure, SourceRecord
from ._sources import read_file as read
from ._state_rows import DeadLetter, JobState
from ._streams import BrokerSource, Consumer, JetStreamSource, RabbitSource, RedisStreamSource
from ._writes import Delete, Increment, Insert, Lookup, Ref, Upsert, Write

__version__ = "0.1.0"


# A library logs; the application decides where it goes. Without this, an application that
# never configured logging would get batchline's warnings on stderr through Python's
# last-resort handler. Counts are logged at INFO; record values only at DEBUG.
logging.getLogger("batchline").addHandler(logging.NullHandler())

__all__ = [
    "AsyncConsumer",
    "BatchlineError",
    "BrokerSource",
    "ConfigError",
    "Consumer",
    "DatabaseError",
    "DeadLetter",
    "DeadLetters",
    "Delete",
    "FailedItem",
    "FatalDatabaseError",
    "FileSource",
    "Increment",
    "Insert",
    "JetStreamSource",
    "JobLocked",
    "JobSpecMismatch",
    "JobState",
    "Lookup",
    "Out",
    "Pipeline",
    "RabbitSource",
    "ReadFailure",
    "RedisStreamSource",
    "Ref",
    "Result",
    "ResumeMismatch",
    "RetryPolicy",
    "SourceError",
    "SourceRecord",
    "TransientExhausted",
    "Upsert",
    "Write",
    "__version__",
    "load",
    "read",
]
