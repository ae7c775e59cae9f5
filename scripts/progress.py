"""Progress of the long scripts (``make eval``, ``make bench``): counts, rate and time left, on stderr (tqdm).

On a terminal the bar redraws in place twice a second; in a log (CI, ``> file``) it writes a line at most every
30 seconds, so a 40-minute run still says where it is without flooding the log. Messages printed while a bar
is shown go through :func:`say`, which keeps the bar below them.
"""
from __future__ import annotations

import sys

from tqdm import tqdm


class _Lines:
    """A log is read line by line: each state of the bar on a line of its own (tqdm redraws with a carriage return)."""

    def __init__(self, out):
        self.out = out

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.out.write(text + "\n")

    def flush(self) -> None:
        self.out.flush()


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", file=None) -> tqdm:
    """A tqdm bar: ``desc: 40%|####      | 2/5 [00:10<00:15, 5.00s/case]`` (done/total, elapsed<left, rate)."""
    out = file or sys.stderr
    interactive = hasattr(out, "isatty") and out.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=out if interactive else _Lines(out),
                dynamic_ncols=interactive, mininterval=0.5 if interactive else 30.0, smoothing=0.3,
                ascii=not interactive)


def say(message: str) -> None:
    """Print a line on stdout without breaking the bars on stderr."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()
