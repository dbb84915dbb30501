"""The per-epoch metrics file of a run: ``metrics.jsonl``, one JSON object per line.

:func:`fconv.train.fit` appends one record per epoch (``{epoch, step, train_loss, train_acc,
test_loss, test_acc, images_per_sec, seconds}``) to :data:`METRICS_FILE` in its ``out_dir``, each
with a single ``O_APPEND`` write followed by an fsync; :func:`read_metrics` reads them back and
skips a partial last line left by a crash. :func:`fconv.viz.plot_curves` draws them.

Both public names are also re-exported as ``fconv.train.METRICS_FILE`` and
``fconv.train.read_metrics``.

Example:
    >>> import tempfile
    >>> run_dir = tempfile.mkdtemp()
    >>> with open(os.path.join(run_dir, METRICS_FILE), "w") as f:  # the 2nd line was cut short
    ...     _ = f.write('{"epoch": 1, "test_acc": 0.5}\\n{"epoch": 2, "test_a')
    >>> read_metrics(run_dir)
    [{'epoch': 1, 'test_acc': 0.5}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["METRICS_FILE", "read_metrics"]

#: Name of the per-epoch metrics file :func:`fconv.train.fit` appends to in ``out_dir``.
METRICS_FILE = "metrics.jsonl"


def _append_line(path: str, record: Mapping[str, Any]) -> None:
    """Appends one JSON line with a single ``write`` on an ``O_APPEND`` file, then fsyncs.

    A crash can at worst leave a partial last line; :func:`read_metrics` skips it and a resumed
    :func:`fconv.train.fit` rewrites the file without it.
    """
    line = (json.dumps(dict(record), sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of ``METRICS_FILE`` in a run directory).

    Lines that are not complete JSON objects (an interrupted write) are skipped.

    Raises:
        FileNotFoundError: If the file does not exist.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records
