"""CompletionsPolicy against a vLLM-like completions server on loopback: contract, order, retries, errors, search."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rstar_jax.config import SearchConfig
from rstar_jax.interfaces import FinishReason, Policy
from rstar_jax.sampling.remote import CompletionsError, CompletionsPolicy
from rstar_jax.search import SearchMode, read_records, run_search
from rstar_jax.testing import BoxGrader, FakeExecutor, ScriptedToyPolicy
from rstar_jax.toy import ToySpec, generate_toy_splits, solution

STOPS = ["<end_of_step>", "<end_of_code>", "<end_of_answer>"]
EOS = "<eos>"  # marks the end-of-sequence token in the fake model's raw output


def _hash(*parts: Any) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def step_gen(prompt: str, seed: int, index: int) -> str:
    """One rStar step from (prompt, seed, index), with more text after the stop string (to be cut off)."""
    return f"x{index} = {_hash(prompt, seed, index) % 1000}\n<end_of_step>\n\nleftover = 2\n<end_of_step>"


def mixed_gen(prompt: str, seed: int, index: int) -> str:
    """Choice k ends by: a step, a code end, an answer, EOS, the token limit (k mod 5)."""
    del prompt, seed
    return [
        "<code>\nx = 1\n<end_of_step>junk",
        "\n\nprint(x)\n<end_of_code>junk",
        "\n<answer>The answer is \\boxed{3}.<end_of_answer>junk",
        "\nthinking aloud" + EOS + "junk",
        "\n" + "y" * 200 + "<end_of_step>",
    ][index % 5]


@dataclasses.dataclass
class FakeVLLM:
    """Behaviour of the fake server; `requests` records every request body (JSON) and `headers` its headers."""

    generator: Callable[[str, int, int], str] = step_gen
    fail_first: int = 0
    fail_status: int = 503
    bad_request: str | None = None
    hang: bool = False
    malformed: bool = False
    drop_choice: bool = False
    omit_stop_reason: bool = False
    barrier: threading.Barrier | None = None
    delay: Callable[[str], float] | None = None
    url: str = ""
    requests: list[dict] = dataclasses.field(default_factory=list)
    headers: list[dict] = dataclasses.field(default_factory=list)
    completion_tokens: list[int] = dataclasses.field(default_factory=list)
    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _choice(raw: str, stops: list[str], max_tokens: int, include_stop: bool) -> tuple[dict, list[str]]:
    """vLLM's treatment of one raw output, one character per token: (choice without index, tokens generated)."""
    events = [(raw.find(s) + len(s), raw.find(s), s) for s in stops if s in raw]
    if EOS in raw:
        events.append((raw.index(EOS) + 1, raw.index(EOS), EOS))
    events.append((len(raw) + 1, len(raw), EOS))  # the model ends after its raw text
    end, cut, stop = min(events, key=lambda e: e[0])  # the first to complete; on a tie, stop list order
    if end > max_tokens:
        return {"text": raw[:max_tokens], "finish_reason": "length", "stop_reason": None}, list(raw[:max_tokens])
    matched = None if stop == EOS else stop
    text = raw[:cut] + (stop if include_stop and matched else "")
    tokens = list(raw[:cut]) + ([EOS] if matched is None else list(stop))
    return {"text": text, "finish_reason": "stop", "stop_reason": matched}, tokens


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        del args

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        state: FakeVLLM = self.server.state  # type: ignore[attr-defined]
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with state.lock:
            count = len(state.requests)
            state.requests.append(payload)
            state.headers.append(dict(self.headers))
        if self.path != "/v1/completions":
            return self._send(404, b'{"detail": "Not Found"}')
        if state.hang:
            state.release.wait(30)
            return None
        if count < state.fail_first:
            error = {"object": "error", "message": "server overloaded", "code": state.fail_status}
            return self._send(state.fail_status, json.dumps(error).encode(), {"Retry-After": "0"})
        if state.bad_request is not None:
            error = {"object": "error", "message": state.bad_request, "type": "BadRequestError", "code": 400}
            return self._send(400, json.dumps(error).encode())
        if state.barrier is not None:
            state.barrier.wait(timeout=10)
        if state.delay is not None:
            time.sleep(state.delay(payload["prompt"]))
        if state.malformed:
            return self._send(200, b"<html>502 Bad Gateway</html>")
        choices, total = [], 0
        for index in range(payload["n"]):
            raw = state.generator(payload["prompt"], payload["seed"], index)
            include = bool(payload.get("include_stop_str_in_output"))
            choice, tokens = _choice(raw, payload["stop"], payload["max_tokens"], include)
            if state.omit_stop_reason:
                del choice["stop_reason"]
            logprobs = {"tokens": tokens} if payload.get("logprobs") is not None else None
            choices.append({"index": index, **choice, "logprobs": logprobs})
            total += len(tokens)
        with state.lock:
            state.completion_tokens.append(total)
        if state.drop_choice:
            choices.pop()
        usage = {"prompt_tokens": len(payload["prompt"]), "completion_tokens": total}
        body = {"id": "cmpl-1", "object": "text_completion", "model": payload["model"], "choices": choices[::-1]}
        return self._send(200, json.dumps({**body, "usage": usage}).encode())


@pytest.fixture
def server():
    state = FakeVLLM()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


def _policy(server: FakeVLLM, **kwargs: Any) -> CompletionsPolicy:
    settings = {"temperature": 0.7, "top_p": 0.9, "timeout_s": 10.0, "max_retries": 3, "backoff_s": 0.001, **kwargs}
    return CompletionsPolicy(server.url, "fake-coder", **settings)


def test_concurrent_requests_come_back_in_prompt_order(server):
    server.barrier = threading.Barrier(4)  # a sequential client would leave the first request waiting here
    server.delay = lambda prompt: 0.02 * (3 - int(prompt.split()[-1]) % 4)  # later prompts answer first
    prompts, seeds = [f"question {i}" for i in range(8)], [100 + i for i in range(8)]
    out = _policy(server, concurrency=4).generate(prompts, 3, STOPS, 64, seeds)
    assert isinstance(_policy(server), Policy)
    for prompt, seed, steps in zip(prompts, seeds, out, strict=True):
        for index, step in enumerate(steps):  # the server lists choices in reverse: grouped by index
            assert step.text == f"x{index} = {_hash(prompt, seed, index) % 1000}\n<end_of_step>"
            assert step.finish is FinishReason.STOP and step.stop == "<end_of_step>"
    sent = sorted(server.requests, key=lambda r: r["seed"])
    assert [r["prompt"] for r in sent] == prompts
    assert all(r["n"] == 3 and r["stop"] == STOPS and r["max_tokens"] == 64 for r in sent)
    assert all(r["model"] == "fake-coder" and r["temperature"] == 0.7 and r["top_p"] == 0.9 for r in sent)


def test_samples_depend_only_on_prompt_and_seed(server):
    policy = _policy(server)
    both = policy.generate(["a", "b"], 2, STOPS, 64, [1, 2])
    assert policy.generate(["b"], 2, STOPS, 64, [2]) == both[1:]
    assert policy.generate(["a", "b"], 2, STOPS, 64, [1, 2]) == both
    assert policy.generate(["a"], 2, STOPS, 64, [3])[0] != both[0]
    assert policy.generate([], 2, STOPS, 64, []) == []


@pytest.mark.parametrize(
    ("omit_stop_reason", "include_stop"),
    [(False, False), (False, True), (True, True)],  # (True, False): test_unreported_stop_rule
)
def test_step_text_ends_with_the_stop_string_that_ended_it(server, omit_stop_reason, include_stop):
    server.generator, server.omit_stop_reason = mixed_gen, omit_stop_reason
    extra = {"include_stop_str_in_output": True} if include_stop else None
    # without stop_reason the EOS sample (index 3) is a guess, which the policy warns about
    expect = pytest.warns(RuntimeWarning) if omit_stop_reason else contextlib.nullcontext()
    with expect:
        (steps,) = _policy(server, extra_body=extra).generate(["p"], 5, STOPS, 60, [0])
    assert [(s.finish, s.stop) for s in steps[:3]] == [
        (FinishReason.STOP, "<end_of_step>"),
        (FinishReason.STOP, "<end_of_code>"),
        (FinishReason.STOP, "<end_of_answer>"),
    ]
    assert [s.text for s in steps[:3]] == [mixed_gen("", 0, k).rsplit("junk", 1)[0] for k in range(3)]
    if not omit_stop_reason:
        assert (steps[3].text, steps[3].finish, steps[3].stop) == ("\nthinking aloud", FinishReason.EOS, None)
    assert (steps[4].text, steps[4].finish, steps[4].stop) == ("\n" + "y" * 59, FinishReason.LENGTH, None)
    assert sum(s.num_tokens for s in steps) == server.completion_tokens[-1]  # usage split over the choices


def test_unreported_stop_rule(server):
    server.generator, server.omit_stop_reason = mixed_gen, True
    with pytest.warns(RuntimeWarning, match="does not say which stop string"):
        (first,) = _policy(server).generate(["p"], 4, STOPS, 60, [0])
    assert [s.text for s in first] == [
        "<code>\nx = 1\n<end_of_step>",
        "\n\nprint(x)\n<end_of_step>",  # the server does not say: the first stop string of the list
        "\n<answer>The answer is \\boxed{3}.<end_of_step>",
        "\nthinking aloud<end_of_step>",  # EOS cannot be told apart either
    ]
    assert all(s.finish is FinishReason.STOP and s.stop == "<end_of_step>" for s in first)
    with pytest.warns(RuntimeWarning, match="unreported_stop='eos'"):
        (eos,) = _policy(server, unreported_stop="eos").generate(["p"], 4, STOPS, 60, [0])
    assert [(s.text, s.finish, s.stop) for s in eos[1:]] == [
        ("\n\nprint(x)\n", FinishReason.EOS, None),
        ("\n<answer>The answer is \\boxed{3}.", FinishReason.EOS, None),
        ("\nthinking aloud", FinishReason.EOS, None),
    ]


def test_token_counts_are_exact_with_logprobs(server):
    server.generator = mixed_gen
    (steps,) = _policy(server, extra_body={"logprobs": 0}).generate(["p"], 5, STOPS, 60, [0])
    assert [s.num_tokens for s in steps[:3]] == [len(s.text) for s in steps[:3]]  # one token per character
    assert steps[3].num_tokens == len(steps[3].text) + 1  # the EOS token
    assert steps[4].num_tokens == 60


@pytest.mark.parametrize("status", [503, 429, 500])
def test_transient_errors_are_retried(server, status):
    server.fail_first, server.fail_status = 2, status
    (steps,) = _policy(server, max_retries=2).generate(["q"], 2, STOPS, 64, [5])
    assert steps[0].text.startswith("x0 = ") and len(server.requests) == 3


def test_retries_give_up_with_the_last_status(server):
    server.fail_first = 100
    with pytest.raises(CompletionsError, match=r"after 3 attempt\(s\): HTTP 503: server overloaded") as err:
        _policy(server, max_retries=2).generate(["q"], 2, STOPS, 64, [5])
    assert err.value.status == 503 and err.value.url == server.url + "/completions"
    assert len(server.requests) == 3


def test_a_client_error_fails_at_once_with_the_server_message(server):
    server.bad_request = "This model's maximum context length is 4096 tokens."
    with pytest.raises(CompletionsError) as err:
        _policy(server, max_retries=5).generate(["q", "r"], 2, STOPS, 64, [5, 6])
    message = str(err.value)
    assert server.url + "/completions" in message and "HTTP 400" in message
    assert "maximum context length is 4096 tokens" in message and err.value.status == 400
    assert len(server.requests) <= 2  # one per prompt at most: no retry


def test_a_hanging_server_times_out_after_the_retries(server):
    server.hang = True
    with pytest.raises(CompletionsError, match=r"after 2 attempt\(s\): timed out after 0.2 s") as err:
        _policy(server, timeout_s=0.2, max_retries=1).generate(["q"], 1, STOPS, 64, [5])
    assert err.value.status is None and len(server.requests) == 2


def test_connection_refused_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    policy = CompletionsPolicy(f"http://127.0.0.1:{port}/v1/", "m", max_retries=1, backoff_s=0.001)
    with pytest.raises(CompletionsError, match=rf"POST http://127.0.0.1:{port}/v1/completions .*connection error"):
        policy.generate(["q"], 1, STOPS, 8, [0])


@pytest.mark.parametrize(
    ("setting", "message"),
    [("malformed", "response is not JSON: '<html>502"), ("drop_choice", "expected 3 choices, got 2")],
)
def test_bad_responses_are_clear_errors(server, setting, message):
    setattr(server, setting, True)
    with pytest.raises(CompletionsError, match=message):
        _policy(server).generate(["q"], 3, STOPS, 64, [0])
    assert len(server.requests) == 1


def test_api_key_from_the_environment_is_sent_and_not_shown(server, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_KEY", "sk-secret-123")
    policy = _policy(server, api_key_env="FAKE_VLLM_KEY")
    policy.generate(["q"], 1, STOPS, 64, [0])
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(policy)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("127.0.0.1:8000/v1", "m"), {}, "http"),
        (("ftp://host/v1", "m"), {}, "http"),
        (("http://host/v1", ""), {}, "model"),
        (("http://host/v1", "m"), {"api_key": "k", "api_key_env": "K"}, "not both"),
        (("http://host/v1", "m"), {"api_key_env": "RSTAR_SURELY_UNSET_VAR"}, "not set"),
        (("http://host/v1", "m"), {"extra_body": {"seed": 1}}, "extra_body"),
        (("http://host/v1", "m"), {"concurrency": 0}, "concurrency"),
        (("http://host/v1", "m"), {"unreported_stop": "last"}, "unreported_stop"),
    ],
)
def test_construction_checks_its_settings(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CompletionsPolicy(*args, **kwargs)


def test_search_on_toy_problems_through_the_server(server, tmp_path):
    problems = generate_toy_splits(ToySpec(train_per_band=1, test_per_band=0, seed=3))["train"]
    teacher = ScriptedToyPolicy(problems, mistake_rate=0.0)
    server.generator = lambda prompt, seed, index: (
        teacher.generate([prompt], index + 1, STOPS, 256, [seed])[0][index].text + "\n\njunk = 1\n<end_of_step>"
    )
    path = tmp_path / "trees.jsonl"
    run_search(
        problems,
        path,
        cfg=SearchConfig(rollouts=2, samples_per_expansion=2, max_depth=12, batch_problems=3),
        mode=SearchMode.TERMINAL,
        policy=_policy(server, concurrency=3),
        executor=FakeExecutor(),
        grader=BoxGrader(),
        ppm=None,
        run_seed=7,
        progress=False,
    )
    records = read_records(path)
    assert [r["id"] for r in records] == [p.id for p in problems]
    for record, problem in zip(records, problems, strict=True):
        states = record["rstar"]
        assert states["0.1"]["text"] == solution.code_steps(problem)[0]
        answers = [s for s in states.values() if s["terminal_kind"] == "answer"]
        assert answers and all(s["text"].endswith("<end_of_answer>") and "junk" not in s["text"] for s in answers)
