"""Progress a person can follow in a job's log: one plain line about every tenth of the work (and at the
end) with what is done, the rate and the time left, instead of progress bars that a log file keeps as
one line of carriage returns. Used by the judges' endpoint calls, training and vLLM's generation.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("aft")


def duration(seconds: float) -> str:
    """h:mm:ss (seconds rounded up, so a short remainder never reads as 0:00:00)."""
    s = math.ceil(max(seconds, 0.0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(label: str, done: int, total: int, elapsed: float, unit: str, extra: str = "") -> str:
    """`label: done/total unit (pct%), rate unit/s, ETA h:mm:ss[, extra]` (no rate or ETA before the
    first item is done)."""
    pct = 100.0 * done / total if total else 100.0
    line = f"{label}: {done:,}/{total:,} {unit} ({pct:.0f}%)"
    if done and elapsed > 0:
        rate = done / elapsed
        line += f", {rate:,.2f} {unit}/s, ETA {duration((total - done) / rate)}"
    return line + (f", {extra}" if extra else "")


def checkpoints(total: int, parts: int = 10) -> set[int]:
    """The counts at which a line is logged: every tenth of `total` (rounded up) and the last one."""
    if total <= 0:
        return set()
    step = math.ceil(total / parts)
    return set(range(step, total, step)) | {total}


class Progress:
    """Counts finished items (thread-safe) and logs a line when the count reaches a checkpoint.
    `extra`: a callable giving more to say on each line (retries, cache hits, loss)."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "items",
        extra: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] = log.info,
    ):
        self.label, self.total, self.unit = label, total, unit
        self.extra, self.clock, self.emit = extra, clock, emit
        self.done = 0
        self.started = clock()
        self._marks = checkpoints(total)
        self._lock = threading.Lock()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            before, self.done = self.done, self.done + n
            crossed = any(before < m <= self.done for m in self._marks)
            if crossed:
                extra = self.extra() if self.extra else ""
                self.emit(
                    progress_line(
                        self.label, self.done, self.total, self.clock() - self.started, self.unit, extra
                    )
                )


def interactive() -> bool:
    """Whether stderr is a terminal (a person watching: progress bars are fine there)."""
    return os.isatty(2)


def quiet_library_bars() -> None:
    """In a log file, the Hugging Face libraries' own progress bars (weights loading and saving, dataset
    maps) off: each would be one long line of carriage returns. Set before those libraries are imported
    (their environment variables), or switched off where one already is."""
    if interactive():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # huggingface_hub, and transformers with it
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # the packages load their submodules lazily: import the one that switches the bars off
    if "huggingface_hub" in sys.modules:
        importlib.import_module("huggingface_hub.utils").disable_progress_bars()
    if "transformers" in sys.modules:
        importlib.import_module("transformers.utils.logging").disable_progress_bar()
    if "datasets" in sys.modules:
        importlib.import_module("datasets.utils.logging").disable_progress_bar()


class _Sink:
    """Where a logged bar's own drawing goes: nowhere."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def log_bar(label: str, unit: str) -> Callable:
    """A tqdm factory for libraries that take one (vLLM's `use_tqdm`): the bar draws nothing and each
    update (one finished item, whatever count it adds) advances a Progress that logs lines; what the
    library puts in the bar's postfix (vLLM: tokens/s) goes on each line."""
    from tqdm import tqdm

    class LogBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["file"] = _Sink()
            super().__init__(*args, **kwargs)
            self.progress = Progress(label, int(self.total or 0), unit, extra=lambda: str(self.postfix or ""))

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            self.progress.advance(1)
            return shown

    return LogBar


def training_line(
    step: int, total: int, loss: float | None, tokens_per_s: float | None, eta_s: float | None
) -> str:
    """`step 120/430 (28%), loss 0.6149, 4,210 tokens/s, ETA 0:00:18` (parts not known are left out)."""
    line = f"step {step:,}/{total:,} ({100.0 * step / max(total, 1):.0f}%)"
    if loss is not None:
        line += f", loss {loss:.4f}"
    if tokens_per_s is not None:
        line += f", {tokens_per_s:,.0f} tokens/s"
    if eta_s is not None:
        line += f", ETA {duration(eta_s)}"
    return line


def training_progress(every_s: float = 60.0, clock: Callable[[], float] = time.monotonic, emit=log.info):
    """A transformers TrainerCallback (made on demand: the Trainer is imported only by training jobs)
    logging a training_line at the first logged step, at the first logged step past every tenth of the
    steps, and at least every `every_s` seconds between; rank 0 only. Rates count from where this run
    started, so a resumed run's ETA is its own."""
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.step0, self.tokens0 = clock(), state.global_step, None
            self.last, self.prev = -math.inf, state.global_step
            self.marks = checkpoints(state.max_steps)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            now, step = clock(), state.global_step
            tokens = logs.get("num_tokens")
            if self.tokens0 is None and tokens is not None:
                self.tokens0 = (float(tokens), now)  # the first logged step: rates count from here
            # logged steps come every logging_steps: a tenth is due when the last ones crossed it
            crossed = any(self.prev < m <= step for m in self.marks)
            first = self.prev == self.step0
            self.prev = step
            if not (crossed or first or now - self.last >= every_s):
                return
            done, elapsed = step - self.step0, now - self.start
            eta = (state.max_steps - step) * elapsed / done if done > 0 and elapsed > 0 else None
            rate = None
            if tokens is not None and self.tokens0 is not None and now > self.tokens0[1]:
                rate = (float(tokens) - self.tokens0[0]) / (now - self.tokens0[1])
            emit(training_line(step, state.max_steps, float(logs["loss"]), rate, eta))
            self.last = now

    return TrainingProgress()


def readable_training_log(trainer) -> None:
    """A Trainer's log as training_progress lines instead of the raw step dicts transformers prints when
    its bar is off (PrinterCallback)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(training_progress())
