"""The parts of ``batchline.dask``, one idea a module; ``batchline.dask`` is their public face.

``_partitions`` checks and splits the input, ``_run`` submits one task a partition and waits,
``_worker`` is what each task does on its worker, ``_committed`` takes each partition's counts
from its job row, ``_result`` sums them, and ``_load_files`` is the command line's file load.
"""

__all__: list[str] = []
