"""ProgressReported output for foreground runs: a redrawn bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import TextIO

import msgspec

from stratcast.shared.events import ProgressReported
from stratcast.shared.report import progress_text

LINE_EVERY_S = 5.0


class ProgressPrinter:
    """A :class:`ProgressReported` callback writing to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.tty = stream, stream.isatty()
        self.last_line = 0.0
        self.drawn = False

    def __call__(self, p: ProgressReported) -> None:
        """Draw the bar (TTY) or print a line at most every few seconds and at every validation check."""
        text = describe(p)
        if self.tty:
            done = int(30 * p.step / p.max_steps)
            self.stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] {text}\x1b[K")
            self.stream.flush()
            self.drawn = True
            return
        now = time.monotonic()
        if p.val_loss is not None or now - self.last_line >= LINE_EVERY_S or p.step == p.max_steps:
            print(text, file=self.stream, flush=True)
            self.last_line = now

    def log(self, message: str) -> None:
        """Print a line of its own, after the bar's (a redrawn bar has no line end until the next output)."""
        self.close()
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar's line; the next progress report draws a new bar below."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def describe(p: ProgressReported) -> str:
    """One line: step, epoch, losses, validation score, throughput and ETA (:func:`progress_text`)."""
    return progress_text(msgspec.structs.asdict(p))
