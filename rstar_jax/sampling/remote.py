"""`CompletionsPolicy`: the `interfaces.Policy` of the search on a served model (an OpenAI-compatible endpoint).

    policy = CompletionsPolicy("http://127.0.0.1:8000/v1", "deepseek-coder-v2", temperature=0.7, concurrency=32)
    steps = policy.generate(prompts, n=16, stop=["<end_of_step>", "<end_of_code>"], max_tokens=1024, seed=seeds)

This is how round 1 can bootstrap from a large served model, as the paper's 236B DeepSeek-Coder under vLLM
(rstar_reference.md Part B §2.4). Each prompt is one `POST {base_url}/completions` with `prompt`, `n`, `stop`,
`max_tokens`, `temperature`, `top_p` and the prompt's own `seed` (vLLM honours per-request seeds), so a prompt's
samples never depend on the rest of the batch. Requests run concurrently on a thread pool; results come back in
prompt order, each prompt's choices ordered by their `index`. Connections are direct (environment proxies are not
used: the prompts and the API key go to `base_url` only).

Failures. Connection errors, timeouts, 429 and 5xx are retried `max_retries` times with exponential backoff
(`backoff_s * 2**attempt`, at most `max_backoff_s`, or the server's numeric `Retry-After` when larger); any other
4xx fails at once. Errors are `CompletionsError`s naming the URL, the HTTP status and the server's message. A
response that is not JSON, has the wrong number of choices or an unknown finish reason is an error too.
`timeout_s` bounds each socket operation (connect, each read) of one attempt.

The stop string. The `Policy` contract wants the step text to END with the stop string that ended it, but the
completions API strips it and reports only `finish_reason: "stop"` (also used for EOS). The stop string is
recovered, in this order:

1. `finish_reason == "length"`: LENGTH, nothing appended.
2. The choice names it: vLLM's `stop_reason` (or SGLang's `matched_stop`) is a string: STOP with that string,
   appended unless the text already ends with it (`include_stop_str_in_output`). A string that is not one of the
   requested stops is an error.
3. The choice has `stop_reason` / `matched_stop` but it is null or a token id: EOS (vLLM's convention for the
   end-of-sequence token), nothing appended.
4. The server reports neither field. If the text ends with a requested stop string (the server kept it, e.g.
   vLLM's `include_stop_str_in_output: true` in `extra_body`), that one (the longest on a tie). Otherwise the
   server cannot tell which stop (or EOS) ended the step, and `unreported_stop` decides: "first" (default) takes
   the first stop string of the list, "eos" treats the step as EOS; a `RuntimeWarning` says so once per policy.

Token counts. `Step.num_tokens` is exact when every choice carries `logprobs.tokens` (ask for it with
`extra_body={"logprobs": 0}`); otherwise `usage.completion_tokens` is split over the choices in proportion to
their text lengths (largest remainder, the sum is kept); without `usage`, about four characters per token.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from rstar_jax.interfaces import FinishReason, Step

__all__ = ["CompletionsError", "CompletionsPolicy"]

_RETRY_STATUS = frozenset({408, 429})
_MAX_SEED = 2**63  # vLLM accepts int64 seeds
_REPORT_KEYS = ("stop_reason", "matched_stop")


class CompletionsError(RuntimeError):
    """A completions request failed (after retries where the failure is transient).

    Attributes:
      url: the request URL.
      status: the last HTTP status, or None when no response came back (connection error, timeout, bad body).
    """

    def __init__(self, message: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class _Retryable(Exception):
    """A transient failure of one attempt: the reason and the server's suggested wait (seconds), if any."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


def _server_message(body: bytes) -> str:
    """The error message of a response body: OpenAI's `error.message`, vLLM's `message`, else the raw text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        for value in (error, data.get("message"), data.get("detail")):
            if isinstance(value, str):
                return value
    return text[:500]


def _read_error(exc: urllib.error.HTTPError) -> str:
    """The server's message of an HTTP error response (its reason phrase when the body cannot be read)."""
    try:
        return _server_message(exc.read()) or str(exc.reason)
    except (OSError, http.client.HTTPException):
        return str(exc.reason)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _split_tokens(total: int, texts: Sequence[str]) -> list[int]:
    """`total` split over `texts` in proportion to their lengths (largest remainder; evenly if all are empty)."""
    weights = [len(t) for t in texts] if any(texts) else [1] * len(texts)
    whole = sum(weights)
    counts = [total * w // whole for w in weights]
    order = sorted(range(len(texts)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


class CompletionsPolicy:
    """Samples steps from an OpenAI-compatible `/completions` endpoint (vLLM, SGLang, ...); see the module doc."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        concurrency: int = 16,
        extra_body: Mapping[str, Any] | None = None,
        unreported_stop: str = "first",
    ) -> None:
        """Checks the settings; nothing is sent until `generate`.

        Args:
          base_url: the API root, e.g. `http://127.0.0.1:8000/v1` (http or https).
          model: the served model's name.
          api_key: bearer token; or `api_key_env`, the name of an environment variable holding it (read now).
          temperature, top_p: sampling settings of every request.
          timeout_s: limit of each socket operation of one attempt.
          max_retries: retries of a transient failure (connection, timeout, 408, 429, 5xx) after the first try.
          backoff_s, max_backoff_s: the wait before retry k is `min(backoff_s * 2**k, max_backoff_s)`.
          concurrency: requests in flight at once.
          extra_body: further JSON fields of every request (e.g. `{"skip_special_tokens": False}`); they may not
            replace the fields this class sets.
          unreported_stop: "first" or "eos": how a "stop" finish is read when the server names no stop string.
        """
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"CompletionsPolicy: base_url must be an http(s) URL like http://host:8000/v1, got {base_url!r}"
            )
        if not model:
            raise ValueError("CompletionsPolicy: model must be a non-empty name")
        if api_key is not None and api_key_env is not None:
            raise ValueError("CompletionsPolicy: give api_key or api_key_env, not both")
        if api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ValueError(f"CompletionsPolicy: environment variable {api_key_env!r} is not set")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0 or max_backoff_s < 0 or concurrency < 1:
            raise ValueError(
                "CompletionsPolicy: need timeout_s > 0, max_retries >= 0, backoff_s >= 0, max_backoff_s >= 0, "
                f"concurrency >= 1; got {timeout_s}, {max_retries}, {backoff_s}, {max_backoff_s}, {concurrency}"
            )
        if unreported_stop not in ("first", "eos"):
            raise ValueError(f"CompletionsPolicy: unreported_stop must be 'first' or 'eos', got {unreported_stop!r}")
        self.url = base_url.rstrip("/") + "/completions"
        self.model = model
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.concurrency = int(concurrency)
        self.unreported_stop = unreported_stop
        self.extra_body = dict(extra_body or {})
        clash = sorted(
            set(self.extra_body) & {"model", "prompt", "n", "stop", "max_tokens", "seed", "temperature", "top_p"}
        )
        if clash:
            raise ValueError(f"CompletionsPolicy: extra_body may not set {clash} (use the arguments)")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._jitter = random.Random()
        self._warned = False

    def __repr__(self) -> str:
        return f"CompletionsPolicy(url={self.url!r}, model={self.model!r}, temperature={self.temperature})"

    def generate(
        self, prompts: Sequence[str], n: int, stop: Sequence[str], max_tokens: int, seed: Sequence[int]
    ) -> list[list[Step]]:
        """Samples `n` steps per prompt, one request per prompt (see `interfaces.Policy.generate`)."""
        if len(seed) != len(prompts):
            raise ValueError(f"CompletionsPolicy.generate: {len(prompts)} prompts but {len(seed)} seeds")
        if n < 1 or max_tokens < 1:
            raise ValueError(f"CompletionsPolicy.generate: need n >= 1 and max_tokens >= 1, got {n}, {max_tokens}")
        stops = [s for s in stop if s]
        if not prompts:
            return []
        abort = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(min(self.concurrency, len(prompts)), "completions")
        futures = [
            pool.submit(self._one, prompt, n, stops, max_tokens, int(s) % _MAX_SEED, abort)
            for prompt, s in zip(prompts, seed, strict=True)
        ]
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            abort.set()  # requests waiting to retry give up, those not started are cancelled
            pool.shutdown(wait=False, cancel_futures=True)
            raise failed[0].exception()  # type: ignore[misc]
        pool.shutdown()
        return [future.result() for future in futures]

    def _one(
        self, prompt: str, n: int, stop: list[str], max_tokens: int, seed: int, abort: threading.Event
    ) -> list[Step]:
        payload = {
            "model": self.model,
            "prompt": prompt,
            "n": n,
            "stop": stop,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": seed,
            **self.extra_body,
        }
        return self._parse(self._post(json.dumps(payload).encode("utf-8"), abort), n, stop)

    def _post(self, body: bytes, abort: threading.Event) -> Any:
        """The JSON of a successful response, retrying transient failures."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(body)
            except _Retryable as exc:
                if attempt == self.max_retries:
                    raise CompletionsError(
                        f"POST {self.url} failed after {attempt + 1} attempt(s): {exc}", self.url, exc.status
                    ) from exc
                delay = min(self.backoff_s * 2**attempt, self.max_backoff_s)
                delay = max(delay * (1.0 + 0.1 * self._jitter.random()), exc.retry_after or 0.0)
                if abort.wait(delay):
                    raise CompletionsError(f"POST {self.url}: abandoned, another request failed", self.url) from exc
        raise AssertionError("unreachable")

    def _attempt(self, body: bytes) -> Any:
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            message = _read_error(exc)
            if exc.code in _RETRY_STATUS or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}: {message}", exc.code, _retry_after(exc.headers)) from exc
            raise CompletionsError(f"POST {self.url} returned HTTP {exc.code}: {message}", self.url, exc.code) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout_s:g} s (connecting)") from exc
            raise _Retryable(f"connection error: {exc.reason}") from exc
        except TimeoutError as exc:
            raise _Retryable(f"timed out after {self.timeout_s:g} s") from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection error: {type(exc).__name__}: {exc}") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            preview = raw[:200].decode("utf-8", errors="replace")
            raise CompletionsError(f"POST {self.url}: response is not JSON: {preview!r}", self.url, 200) from exc

    def _parse(self, data: Any, n: int, stop: list[str]) -> list[Step]:
        """The `n` Steps of one response, by choice index."""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or len(choices) != n:
            got = len(choices) if isinstance(choices, list) else "no choices list"
            raise CompletionsError(f"POST {self.url}: expected {n} choices, got {got}", self.url, 200)
        if not all(isinstance(c, dict) and isinstance(c.get("text"), str) for c in choices):
            raise CompletionsError(f"POST {self.url}: every choice needs a 'text' string", self.url, 200)
        indices = [c.get("index", i) for i, c in enumerate(choices)]
        if not all(isinstance(i, int) for i in indices) or sorted(indices) != list(range(n)):
            raise CompletionsError(f"POST {self.url}: choice indices {indices} are not 0..{n - 1}", self.url, 200)
        ordered = [choices[indices.index(k)] for k in range(n)]
        parts = [self._finish(c, stop) for c in ordered]
        texts = [text for text, _, _ in parts]
        counts = self._token_counts(data, ordered, texts)
        return [Step(text, finish, matched, k) for (text, finish, matched), k in zip(parts, counts, strict=True)]

    def _finish(self, choice: dict, stop: list[str]) -> tuple[str, FinishReason, str | None]:
        """(step text, finish, stop string) of one choice, by the rules of the module doc."""
        text, reason = choice["text"], choice.get("finish_reason")
        if reason == "length":
            return text, FinishReason.LENGTH, None
        if reason != "stop":
            raise CompletionsError(f"POST {self.url}: unexpected finish_reason {reason!r}", self.url, 200)
        reported = [choice[key] for key in _REPORT_KEYS if key in choice]
        named = next((r for r in reported if isinstance(r, str)), None)
        if named is not None:
            if named not in stop:
                raise CompletionsError(f"POST {self.url}: server stopped at {named!r}, not one of {stop}", self.url)
            return (text if text.endswith(named) else text + named), FinishReason.STOP, named
        if reported:  # null or a token id: the end-of-sequence token
            return text, FinishReason.EOS, None
        kept = sorted((s for s in stop if text.endswith(s)), key=len, reverse=True)
        if kept:
            return text, FinishReason.STOP, kept[0]
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.url}: the server does not say which stop string ended a step (no stop_reason); reading it as "
                f"unreported_stop={self.unreported_stop!r}. Set include_stop_str_in_output in extra_body if supported.",
                RuntimeWarning,
                stacklevel=2,
            )
        if self.unreported_stop == "first" and stop:
            return text + stop[0], FinishReason.STOP, stop[0]
        return text, FinishReason.EOS, None

    @staticmethod
    def _token_counts(data: dict, choices: list[dict], texts: list[str]) -> list[int]:
        """Tokens per choice: `logprobs.tokens` when all have it, else `usage.completion_tokens` split by length."""
        per_choice = [c["logprobs"].get("tokens") if isinstance(c.get("logprobs"), dict) else None for c in choices]
        if all(isinstance(tokens, list) for tokens in per_choice):
            return [len(tokens) for tokens in per_choice]  # type: ignore[arg-type]
        usage = data.get("usage")
        total = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            return _split_tokens(total, texts)
        return [(len(text) + 3) // 4 for text in texts]
