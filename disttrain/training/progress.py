"""Rank 0's view of a job: a progress bar on a terminal, plain log lines otherwise.

Under `dtrun -n N` a rank's output is a file the launcher reads, so the bar is sent to the
launcher as control lines and drawn on its terminal; in-process (`-n 1`) it is drawn here.
"""
import os
import sys
import time

CONTROL = "\x1edtrun:"


def resolve_mode(setting, rank):
    """'bar', 'plain' or 'none' for this rank."""
    if rank != 0 or setting == "none":
        return "none"
    if setting in ("bar", "plain"):
        return setting
    launcher = os.environ.get("DTRUN_PROGRESS")
    if launcher in ("bar", "plain"):
        return launcher
    return "bar" if sys.stdout.isatty() else "plain"


class Progress:
    def __init__(self, mode, total_steps, steps_per_epoch, epochs, stream=None, min_interval=0.1):
        self.mode = mode
        self.total = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.stream = stream or sys.stdout
        self.min_interval = min_interval
        self.via_launcher = os.environ.get("DTRUN_CONTROL") == "1"
        self._last = 0.0
        self.loss = None
        self.rate = None
        self._drawn = False
        self._step = 0

    def _bar_text(self, step):
        width = 24
        frac = step / self.total if self.total else 1.0
        fill = int(frac * width)
        epoch = min(self.epochs, max(step - 1, 0) // max(1, self.steps_per_epoch) + 1)
        text = f"epoch {epoch}/{self.epochs} [{'#' * fill}{'.' * (width - fill)}] {step}/{self.total}"
        if self.loss is not None:
            text += f" loss {self.loss:.4f}"
        if self.rate is not None:
            text += f" {self.rate:,.0f} samples/s"
        return text

    def update(self, step, loss=None, rate=None, force=False):
        if loss is not None:
            self.loss = loss
        if rate is not None:
            self.rate = rate
        self._step = step
        if self.mode != "bar":
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval and step != self.total:
            return
        self._last = now
        text = self._bar_text(step)
        if self.via_launcher:
            self.stream.write(f"{CONTROL}progress {text}\n")
        else:
            self.stream.write("\r\x1b[K" + text)
            self._drawn = True
        self.stream.flush()

    def log(self, line):
        """A line of the plain log (also shown above the bar in bar mode)."""
        if self.mode == "none":
            return
        if self.mode == "bar" and self._drawn and not self.via_launcher:
            self.stream.write("\r\x1b[K")
        self.stream.write(line + "\n")
        if self.mode == "bar" and self._drawn and not self.via_launcher:
            self.stream.write(self._bar_text(self._step))
        self.stream.flush()

    def close(self):
        if self.mode != "bar":
            return
        if self.via_launcher:
            self.stream.write(f"{CONTROL}progress-end\n")
        elif self._drawn:
            self.stream.write("\n")
        self.stream.flush()
