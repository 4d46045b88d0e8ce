"""The asyncio API: ``await pipeline.arun(...)`` and ``async with pipeline.consumer(...)``.

Services that consume brokers are asyncio applications, and their event loop must never wait
on a database round trip. So the engine runs as it always does, on threads of its own (the
mapping thread and the flush thread), and the loop only hands it records and awaits the end:

- records of an async iterable are taken on the loop, one at a time, as the engine's
  mapping thread asks for them (it waits; the loop does not), so a slow database slows the
  iteration instead of filling memory;
- an ``async def`` map function runs on the loop (it may await an HTTP enrichment) while
  the mapping thread waits for it: the mapping stays sequential, once per record, in order;
- ``linger``: a record that has waited that long is flushed even if its chunk is not full,
  for iterables that trickle (a subscription) rather than run dry.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError
from ._out import Out
from ._result import Result
from ._run_loop import FLUSH_NOW
from ._sources import ReadFailure, SourceRecord

if TYPE_CHECKING:
    from ._pipeline import Pipeline
    from ._streams import BrokerSource, Consumer

__all__ = ["AsyncConsumer", "arun", "sync_map"]


def sync_map(map_fn: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``map_fn`` as the engine calls it: a coroutine function runs on ``loop`` while the
    calling (mapping) thread waits; a plain function is returned as it is."""
    if map_fn is None or not inspect.iscoroutinefunction(map_fn):
        return map_fn

    def mapped(record: dict[str, Any], out: Out) -> None:
        asyncio.run_coroutine_threadsafe(map_fn(record, out), loop).result()

    return mapped


def _records(
    records: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    loop: asyncio.AbstractEventLoop,
    linger: float | None,
    cuts: list[int],
) -> Iterator[Any]:
    """The engine's source, on the mapping thread: numbered records, each taken from the
    async iterable on the loop when asked for; ``FLUSH_NOW`` once the open chunk's first
    record waited ``linger``. ``cuts[0]`` counts the chunks the run loop closed (its
    ``on_cut``): the record after a cut opens a chunk, and starts the clock again."""
    if not isinstance(records, AsyncIterable):
        for position, record in enumerate(records, start=1):
            yield _item(position, record)
        return
    iterator = records.__aiter__()

    async def next_record() -> Any:
        return await iterator.__anext__()

    position = 0
    oldest: float | None = None
    seen = cuts[0]
    while True:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(next_record(), loop)
        while True:
            timeout = None if oldest is None or linger is None else oldest + linger
            try:
                if timeout is None:
                    record = future.result()
                else:
                    record = future.result(max(0.0, timeout - time.monotonic()))
                break
            except FutureTimeout:
                oldest = None
                yield FLUSH_NOW  # then wait on for the same record
                seen = cuts[0]
            except StopAsyncIteration:
                return
        position += 1
        if oldest is None:
            oldest = time.monotonic()
        yield _item(position, record)
        if cuts[0] != seen:  # that record filled the chunk
            seen = cuts[0]
            oldest = None


def _item(position: int, record: Any) -> Any:
    if isinstance(record, Mapping):
        return SourceRecord(position, position, dict(record))
    return ReadFailure(
        position, position, f"record is {type(record).__name__}, expected a mapping", None
    )


async def arun(
    pipeline: Pipeline,
    records: AsyncIterable[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    map: Any = None,
    *,
    linger: float | None = None,
    job: str | None = None,
    idempotency_key: Callable[[dict[str, Any]], Any] | None = None,
    source_id: str | None = None,
    **options: Any,
) -> Result:
    """See :meth:`batchline.Pipeline.arun`."""
    if linger is not None and not linger > 0:
        raise ConfigError(f"linger must be above 0, got {linger}")
    loop = asyncio.get_running_loop()
    cuts = [0]
    source = _records(records, loop, linger, cuts)
    mapped = sync_map(map, loop)

    def cut() -> None:
        cuts[0] += 1

    def run() -> Result:
        return pipeline._run_source(
            source,
            mapped,
            job=job,
            idempotency_key=idempotency_key,
            fingerprint=source_id,
            on_cut=cut,
            **options,
        )

    done: asyncio.Future[Result] = loop.create_future()

    def thread_main() -> None:
        try:
            result = run()
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, done, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)

    threading.Thread(target=thread_main, name="batchline-arun", daemon=True).start()
    return await done


def _settle(
    future: asyncio.Future[Result], result: Result | None, exc: BaseException | None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)


class AsyncConsumer:
    """A broker consumer inside an asyncio application (``async with pipeline.consumer(…)``).

    Entering starts the consumer on a thread of its own and returns once it is connected and
    waiting for messages; leaving stops it (the chunk in hand commits and is acknowledged)
    and waits for it to end. ``result`` is the run's :class:`~batchline.Result` after that.
    """

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._ended: asyncio.Event | None = None

    @property
    def acked(self) -> int:
        """Messages acknowledged so far."""
        return self.consumer.acked

    @property
    def result(self) -> Result | None:
        return self.consumer.result

    def stop(self) -> None:
        """Finish the chunk in hand and end (the ``async with`` block's end does this)."""
        self.consumer.stop()

    async def wait_acked(self, count: int, timeout: float | None = None) -> bool:
        """Wait (without blocking the loop) until ``count`` messages were acknowledged."""
        return await asyncio.to_thread(self.consumer.wait_acked, count, timeout)

    async def __aenter__(self) -> AsyncConsumer:
        loop = asyncio.get_running_loop()
        self.consumer.map = sync_map(self.consumer.map, loop)  # an async map runs here
        ended = self._ended = asyncio.Event()

        def thread_main() -> None:
            try:
                self.consumer.run()
            except BaseException as exc:
                self._failure = exc
            finally:
                self.consumer.ready.set()  # never leave __aenter__ waiting
                loop.call_soon_threadsafe(ended.set)

        self._thread = threading.Thread(target=thread_main, name="batchline-consumer")
        self._thread.start()
        await asyncio.to_thread(self.consumer.ready.wait)
        if self._failure is not None:
            raise self._failure
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.consumer.stop()
        assert self._ended is not None
        await self._ended.wait()
        if self._failure is not None:
            raise self._failure


def consumer(
    pipeline: Pipeline,
    source: BrokerSource,
    map: Any = None,
    *,
    job: str,
    linger: float = 0.2,
    **options: Any,
) -> AsyncConsumer:
    """See :meth:`batchline.Pipeline.consumer`."""
    from ._streams import Consumer

    return AsyncConsumer(Consumer(pipeline, source, map, job=job, linger=linger, **options))
