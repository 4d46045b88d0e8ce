"""A runner of one job, for the job-lock tests: ``python tests/_lock_runner.py ARGS``.

It loads records ``{"id": i, "v": "r<i>"}`` for i in 1..N into ``items`` (a table with no
unique key, so a second runner applying them again would show as extra rows) under a job,
and can stop at one record until a gate file appears: that is how a test holds a runner in
the middle of its job, with its first chunks committed. It prints one JSON line: the Result,
or the refusal (exit 2) when another runner holds the job.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import batchline as bl


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("job")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=20)
    parser.add_argument("--hold-at", type=int, default=0, help="stop at this record ...")
    parser.add_argument("--gate", help="... until this file exists")
    parser.add_argument("--ready", help="touched once held (after a chunk committed)")
    parser.add_argument("--wait", type=float, default=0.0)
    args = parser.parse_args()

    committed = threading.Event()

    def on_chunk(result: Any, failed: Any) -> None:
        committed.set()

    def hold() -> None:
        deadline = time.monotonic() + 60
        while not committed.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        Path(args.ready).touch()
        while not Path(args.gate).exists():
            if time.monotonic() > deadline:
                raise SystemExit("the gate never opened")
            time.sleep(0.01)

    def map_record(record: dict[str, Any], out: bl.Out) -> None:
        if record["id"] == args.hold_at:
            hold()
        out.insert("items", record)

    records = ({"id": i, "v": f"r{i}"} for i in range(1, args.records + 1))
    pipeline = bl.Pipeline(args.url, writes=[bl.Insert("items")], chunk_size=args.chunk_size)
    try:
        result = pipeline.run(
            records,
            map_record,
            job=args.job,
            source_id="items-v1",
            on_chunk=on_chunk,
            wait=args.wait or False,
        )
    except bl.JobLocked as exc:
        print(json.dumps({"refused": str(exc), "holder": exc.holder}), flush=True)
        return 2
    print(json.dumps(result.to_dict() | {"message": result.message}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
