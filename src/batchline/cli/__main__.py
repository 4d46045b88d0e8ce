"""``python -m batchline.cli``: the ``batchline`` command (the tests and benches spawn it so)."""

from . import main

main()
