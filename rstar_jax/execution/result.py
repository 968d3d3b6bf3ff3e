"""The result of one program execution, and the output post-processing shared by zygote and tests.

Output rules (`finalize_output`):
- bytes are decoded as UTF-8 with invalid sequences replaced by U+FFFD, so decoding never fails;
- with `round_floats` (the reference's `is_evalf`), an output that as a whole parses as a float becomes
  `str(round(value, 4)) + "\\n"` when that is not longer (e.g. "0.333333333\\n" -> "0.3333\\n");
- an output longer than `max_chars` keeps its head and tail: first `max_chars // 2` characters, "...",
  last `max_chars // 2` characters (the reference's 512 + "..." + 512 at `max_chars=1024`).
"""

from __future__ import annotations

import dataclasses
import enum
import math


class ExecStatus(enum.StrEnum):
    """Structured outcome of one program. Only OK counts as success."""

    OK = "ok"
    EXCEPTION = "exception"  # the program raised (incl. SystemExit(nonzero), KeyboardInterrupt, SyntaxError)
    TIMEOUT = "timeout"  # wall-clock deadline or CPU-seconds limit
    MEMORY = "memory"  # MemoryError under the address-space limit
    OUTPUT_LIMIT = "output_limit"  # stdout/stderr reached the file-size cap
    CRASH = "crash"  # killed by a signal, or exited without reporting (os._exit)
    INFRA_ERROR = "infra_error"  # executor fault (sandbox set-up, worker death): not the program's fault


@dataclasses.dataclass(frozen=True, slots=True)
class ExecResult:
    """Outcome of one program.

    Attributes:
      ok: True iff the program ran to completion (or called sys.exit(0)/sys.exit()) within every limit.
      output: what the program wrote to stdout (fd 1, so `os.write(1, ...)` and prints inside functions
        count), followed by `str(value)` of a trailing bare expression whose value is not None, on its own
        line. Decoded, post-processed and truncated as described in the module docstring. Kept (partially)
        on failure as well.
      error: None when ok, else one readable line: "ZeroDivisionError: division by zero", "timeout",
        "memory limit", "output limit", "killed by signal SIGSEGV", ...
      seconds: wall time of the program's process, fork to reap.
      status: the structured outcome; derived from `ok` when not given.
    """

    ok: bool
    output: str
    error: str | None
    seconds: float
    status: ExecStatus | None = None

    def __post_init__(self) -> None:
        if self.status is None:
            object.__setattr__(self, "status", ExecStatus.OK if self.ok else ExecStatus.EXCEPTION)
        if self.ok != (self.status == ExecStatus.OK):
            raise ValueError(f"rstar_jax.execution.result: ok={self.ok} contradicts status={self.status}")
        if self.ok != (self.error is None):
            raise ValueError(f"rstar_jax.execution.result: ok={self.ok} but error={self.error!r}")

    @property
    def observation(self) -> str:
        """What the reference shows the model: the stripped output when ok, else the error line."""
        return self.output.strip() if self.ok else str(self.error)


def round_float_output(text: str) -> str:
    """The reference's float rounding: a whole-output float becomes str(round(f, 4)) + "\\n" if not longer."""
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return text
    if not math.isfinite(value):
        return text
    rounded = str(round(value, 4)) + "\n"
    return rounded if len(rounded) <= len(text) else text


def truncate_middle(text: str, max_chars: int) -> str:
    """Keep the first and last `max_chars // 2` characters around "..." when `text` is longer than max_chars."""
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    return text[:half] + "..." + (text[-half:] if half else "")


def finalize_output(head: bytes, tail: bytes, total_bytes: int, max_chars: int, round_floats: bool) -> str:
    """Decode and post-process captured stdout.

    Args:
      head: the first bytes of the output (all of it when `total_bytes <= len(head)`).
      tail: the last bytes of the output (ignored when `head` already holds everything).
      total_bytes: the size of the whole output.
      max_chars: output character budget (head and tail kept beyond it).
      round_floats: apply `round_float_output` (reference behaviour) before truncation.
    """
    if total_bytes <= len(head):
        text = head.decode("utf-8", errors="replace")
        return truncate_middle(round_float_output(text) if round_floats else text, max_chars)
    half = max_chars // 2
    head_text = head.decode("utf-8", errors="replace")[:half]
    tail_text = tail.decode("utf-8", errors="replace")[-half:] if half else ""
    return head_text + "..." + tail_text
