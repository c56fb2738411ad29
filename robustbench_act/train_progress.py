"""Training progress: a rich bar on a terminal, one line per epoch otherwise, nothing when quiet."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import Any

from robustbench_act import distributed as dist


class _Reporter:
    """Rich progress on a TTY, one plain line per epoch otherwise, nothing when disabled."""

    def __init__(self, enabled: bool, total_iters: int, n_epochs: int) -> None:
        self.enabled = enabled and dist.is_main_process()
        self.rich = self.enabled and sys.stderr.isatty()
        self.total = total_iters
        self.n_epochs = n_epochs
        self.progress: Any = None
        self.task: Any = None
        self.t0 = time.perf_counter()
        self.it0 = 0

    def start(self, done: int) -> None:
        self.it0 = done
        self.t0 = time.perf_counter()
        if self.rich:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                TextColumn("it {task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]} acc {task.fields[acc]} {task.fields[ips]}"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=self.total, completed=done, epoch="-", loss="-", acc="-", ips=""
            )

    def update(self, it: int, epoch: int, loss: float | None = None, acc: float | None = None) -> None:
        if self.progress is not None:
            fields: dict[str, Any] = {"epoch": f"{epoch + 1}/{self.n_epochs}"}
            if loss is not None:
                fields["loss"] = f"{loss:.3f}"
            if acc is not None:
                fields["acc"] = f"{acc:.1f}%"
            self.progress.update(self.task, completed=it, **fields)

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        val = "" if math.isnan(row["val_acc"]) else f" val {row['val_acc']:.2f}%"
        done = row["iteration"] - self.it0
        rate = (time.perf_counter() - self.t0) / max(done, 1)
        eta = rate * (self.total - row["iteration"])
        line = (
            f"epoch {row['epoch']}/{self.n_epochs} it {row['iteration']}/{self.total} "
            f"loss {row['loss']:.4f} train {row['train_acc']:.2f}%{val} lr {row['lr']:.4g} "
            f"{row['images_per_s']:.0f} img/s eta {eta:.0f}s"
        )
        if self.progress is not None:
            self.progress.update(self.task, completed=row["iteration"], loss=f"{row['loss']:.3f}",
                                 acc=f"{row['train_acc']:.1f}%", ips=f"{row['images_per_s']:.0f} img/s")  # fmt: skip
            self.progress.console.print(line, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


