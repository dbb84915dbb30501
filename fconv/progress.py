"""The progress display of :func:`fconv.train.fit` (its ``progress=`` argument).

On a terminal with tqdm installed (``pip install 'fconv[progress]'``) each epoch gets a bar that
advances with the steps and ends with the epoch's train and test metrics; otherwise each epoch
prints one plain line when it ends; disabled, nothing is shown. Only :func:`fconv.train.fit`
uses it, so the module has no public names.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__: list[str] = []


class _Progress:
    """A tqdm bar per epoch on a terminal; one plain line per epoch otherwise; or nothing."""

    def __init__(self, enabled: bool, epochs: int):
        self.enabled, self.epochs, self.bar = enabled, epochs, None
        self.tqdm = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - optional extra fconv[progress]
                tqdm = None
            self.tqdm = tqdm

    def start(self, epoch: int, steps: int) -> None:
        if self.tqdm is not None:
            self.bar = self.tqdm(
                total=steps, desc=f"epoch {epoch}/{self.epochs}", unit="batch", leave=True
            )

    def update(self, n: int, loss: float | None, acc: float | None, ips: float) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if loss is not None:
                self.bar.set_postfix_str(f"loss {loss:.4f} acc {acc:.4f} {ips:,.0f} img/s")

    def end(self, r: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        text = (
            f"loss {r['train_loss']:.4f} acc {r['train_acc']:.4f} | test loss "
            f"{r['test_loss']:.4f} acc {r['test_acc']:.4f} | {r['images_per_sec']:,.0f} img/s "
            f"{r['seconds']:.1f}s"
        )
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.close()
            self.bar = None
        else:
            print(f"epoch {r['epoch']}/{self.epochs} step {r['step']}: {text}", flush=True)
