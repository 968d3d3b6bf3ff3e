"""Progress bars with rate and ETA for every loop that can take more than a few seconds.

    with Progress(total=len(programs), desc="execute", unit="prog") as bar:
        for chunk in chunks:
            ...
            bar.update(len(chunk))

The bar (tqdm, on stderr) shows count, rate and ETA; when it closes, one summary line with the count, the time and
the rate goes to the log file (to the console too when the bar is disabled), so the figure survives in `logs/*.log`.
"""

import time
from collections.abc import Iterable, Iterator
from typing import Any

import tqdm
from absl import logging

__all__ = ["Progress"]


class Progress:
    """A progress bar over `total` items of kind `unit` (iterate it, or call `update`)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self._iterable = iterable
        self._desc, self._unit, self._enabled = desc, unit, enabled
        self._count = 0
        self._start = time.perf_counter()
        self._closed = False
        self._bar = tqdm.tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=not enabled,
            mininterval=0.5,
            dynamic_ncols=True,
            leave=False,
        )

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise TypeError("Progress was built without an iterable; call update() instead")
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self._count += n
        self._bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        seconds = time.perf_counter() - self._start
        rate = self._count / seconds if seconds > 0 else float("inf")
        args = (self._desc, self._count, self._unit, seconds, rate, self._unit)
        # with the bar on the console, the line is for the log file only
        logging.info("%s: %d %s in %.1f s (%.1f %s/s)", *args, extra={"console": not self._enabled})

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
