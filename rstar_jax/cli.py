"""Command-line plumbing shared by every `launch/` entry point: the `--config` flag, validation, the error path.

Every launch module is a thin absl main:

    _CONFIG = cli.define_config_flag()

    def main(argv):
        cfg = cli.parsed_config(_CONFIG)
        ...

    if __name__ == "__main__":
        cli.run(main)

`cli.run` checks that the `--config` file exists and every `--config.a.b=v` override against the `RunConfig`
tree *before* absl parses the flags, so a missing file or a misspelt key stops the program with a message naming
it, before any work. `parsed_config` then runs `config_validation.validate` and turns a `ConfigError` into the
same kind of exit, points JAX's persistent compilation cache at `config.compile_cache` and sets XLA's cheaper CPU
code generator where this jaxlib knows it (`xla_env`, before jax loads). Programs compiled by one run are loaded
from disk by the next. A torn entry left by a killed process only costs a
warning and a recompile (JAX checks what it reads).

The one error path: every error a user can cause (`user_errors`: config values, files and records, model
directories, checkpoints, a busy or refused workdir, a diverging training run) ends the program with one line
`error: <what>` on stderr and exit status 2. The traceback goes to the run's log file (`<workdir>/logs/*.log`)
and, with `--verbose`, to the console as well. The console is quiet otherwise: library INFO lines go to the log
file only (`workdir.quiet_console`).
"""

import dataclasses
import difflib
import errno
import importlib.machinery
import importlib.util
import json
import sys
import traceback
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from rstar_jax import xla_env
from rstar_jax.config import ConfigError, RunConfig
from rstar_jax.config_validation import validate
from rstar_jax.workdir import WorkdirBusy, log_failure, quiet_console

__all__ = [
    "UsageExit",
    "check_config_file",
    "check_config_result",
    "check_override_keys",
    "define_config_flag",
    "one_line",
    "parsed_config",
    "run",
    "user_errors",
]

_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "on an error, also print its traceback; show library INFO log lines on the console"
)

_FLAG = "config"


def one_line(text: str) -> str:
    """`text` with its line breaks folded, so an error is one line on the console."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class UsageExit(SystemExit):
    """Exit status 2 with a one-line message `error: ...` on stderr (bad command line, config or input)."""

    def __init__(self, message: str):
        print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
        super().__init__(2)


def define_config_flag(help_text: str = "config file defining get_config() -> RunConfig") -> typing.Any:
    """Defines `--config=configs/x.py` (with `--config.a.b=v` overrides) and returns its flag holder."""
    return config_flags.DEFINE_config_file(_FLAG, default=None, help_string=help_text, lock_config=False)


def _section_keys(cls: type) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_override_keys(argv: Sequence[str], root: type = RunConfig) -> None:
    """Raises `UsageExit` for any `--config.<path>` whose path is not a field of the config tree `root`."""
    for arg in argv[1:]:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        for prefix in (f"--{_FLAG}.", f"-{_FLAG}.", f"--no{_FLAG}."):
            if name.startswith(prefix):
                _check_path(name[len(prefix) :], root)
                break


def _check_path(path: str, root: type) -> None:
    section, walked = root, _FLAG
    parts = path.split(".")
    for i, part in enumerate(parts):
        keys = _section_keys(section)
        if part not in keys:
            close = difflib.get_close_matches(part, keys, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(f'{walked}.{c}') for c in close)}?" if close else ""
            raise UsageExit(
                f"unknown config key '{walked}.{part}' (from --{_FLAG}.{path}).{hint} "
                f"Keys of '{walked}': {', '.join(keys)}."
            )
        walked = f"{walked}.{part}"
        child = keys[part]
        is_last = i == len(parts) - 1
        if dataclasses.is_dataclass(child):
            if is_last:
                raise UsageExit(f"'{walked}' is a section; set one of its keys: {', '.join(_section_keys(child))}.")
            section = child
        elif not is_last:
            raise UsageExit(f"'{walked}' is a value, not a section (from --{_FLAG}.{path}).")


def _config_spec(argv: Sequence[str]) -> str | None:
    """The value of `--config` in `argv` (`--config=X` or `--config X`), if given."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        for name in (f"--{_FLAG}", f"-{_FLAG}"):
            if arg.startswith(name + "="):
                return arg[len(name) + 1 :]
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
    return None


def check_config_file(argv: Sequence[str]) -> None:
    """Raises `UsageExit` when `--config` names no existing file (ml_collections' `path:arg` form is allowed)."""
    spec = _config_spec(argv)
    if spec is None:
        return
    path = spec if Path(spec).is_file() else spec.split(":", 1)[0]
    if not path:
        raise UsageExit(f"--{_FLAG} is empty; give a config file, e.g. --{_FLAG}=configs/tiny.py")
    if not Path(path).is_file():
        what = "is a directory, not a config file" if Path(path).is_dir() else "not found"
        raise UsageExit(f"config file {path} {what} (--{_FLAG}={spec}); the shipped ones are configs/*.py")


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def check_config_result(argv: Sequence[str]) -> None:
    """Raises `UsageExit` when the `--config` file fails to load, or its `get_config()` raises or returns anything but
    a `RunConfig`, naming the file and the cause's one-line message (before ml_collections applies the overrides)."""
    spec = _config_spec(argv)
    if not spec:
        return
    path, *args = [spec] if Path(spec).is_file() else spec.split(":", 1)
    try:
        loader = importlib.machinery.SourceFileLoader("_rstar_checked_config", path)  # as ml_collections loads it
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
        sys.modules[loader.name] = module  # dataclasses defined in the file look their module up
        loader.exec_module(module)
        get_config = getattr(module, "get_config", None)
        if not callable(get_config):
            raise UsageExit(f"config file {path}: defines no get_config() (it must return a RunConfig)")
        result = get_config(*args)
    except UsageExit:
        raise
    except Exception as e:  # the error is inside the config file: name it and the cause, in one line
        raise UsageExit(f"config file {path}: {type(e).__name__}: {one_line(str(e))}") from None
    if not isinstance(result, RunConfig):
        raise UsageExit(f"config file {path}: get_config() returned {_type_name(result)}, expected RunConfig")


def _parse_flags(argv: list[str]) -> list[str]:
    check_config_file(argv)
    check_override_keys(argv)
    check_config_result(argv)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        raise UsageExit(str(e)) from None
    except Exception as e:  # ml_collections could not load the config file: the error is inside it
        cause = e.__cause__ or e
        raise UsageExit(f"config file {_config_spec(argv)}: {type(cause).__name__}: {one_line(str(cause))}") from None


def parsed_config(holder: typing.Any) -> RunConfig:
    """The validated config behind `--config`; exits with status 2 and a message naming the key when invalid."""
    cfg = holder.value
    path = flags.FLAGS[holder.name].config_filename if holder.present else None
    if cfg is None and path is None:
        raise UsageExit(f"--{_FLAG}=configs/<name>.py is required (e.g. --{_FLAG}=configs/tiny.py).")
    if not isinstance(cfg, RunConfig):
        try:
            _ = cfg.seed  # ml_collections' stand-in for a config file that failed to load raises here
        except OSError as e:
            cause = e.__cause__ or e
            raise UsageExit(f"config file {path}: {type(cause).__name__}: {one_line(str(cause))}") from None
        except Exception:  # a dict, a ConfigDict, ...: the type check below names it
            pass
        raise UsageExit(f"config file {path}: get_config() returned {_type_name(cfg)}, expected RunConfig")
    try:
        cfg = validate(cfg)
    except ConfigError as e:
        raise UsageExit(f"invalid config ({path}): {e}") from None
    xla_env.use_compile_cache(cfg.compile_cache)
    xla_env.use_cheap_cpu_codegen()
    return cfg


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types a user's input can cause (module docstring); anything else is a bug (a traceback).

    Types from modules the program has not imported cannot have been raised, so they are not imported here."""
    found: list[type[BaseException]] = [
        ConfigError,
        WorkdirBusy,
        FloatingPointError,  # train.NonFiniteError and its stage-named wrapper
        OSError,  # a missing, unreadable or unwritable path (read-only file system, a file where a directory goes)
        json.JSONDecodeError,
    ]
    if "rstar_jax.evolve.stages" in sys.modules:  # it imports jax: a config error is reported without it
        from rstar_jax.evolve.stages import StageRefused

        found.append(StageRefused)
    if "rstar_jax.data" in sys.modules:
        from rstar_jax.data import ProblemFormatError

        found.append(ProblemFormatError)
    if "rstar_jax.models" in sys.modules:
        from rstar_jax.models.config import ConfigError as ModelConfigError
        from rstar_jax.models.hf_io import WeightsError
        from rstar_jax.models.sharding import ShardingError
        from rstar_jax.models.tokenizer import TokenizerError

        found += [ModelConfigError, WeightsError, TokenizerError, ShardingError]
    if "rstar_jax.checkpoint" in sys.modules:
        from rstar_jax.checkpoint import CheckpointCorruptError, CheckpointMismatchError, CheckpointNotFoundError

        found += [CheckpointCorruptError, CheckpointMismatchError, CheckpointNotFoundError]
    if "rstar_jax.train" in sys.modules:
        from rstar_jax.train import Preempted, RecordError

        found += [Preempted, RecordError]  # Preempted: saved; the same command resumes
    if "rstar_jax.sampling.remote" in sys.modules:
        from rstar_jax.sampling.remote import CompletionsError

        found.append(CompletionsError)
    if "rstar_jax.execution.sandbox" in sys.modules:
        from rstar_jax.execution.sandbox import SandboxError

        found.append(SandboxError)
    return tuple(found)


def _message(exc: BaseException) -> str:
    """The one-line message of a user error; an OS error raised by the standard library (`[Errno 30] Read-only
    file system: 'x'`) reads `x: Read-only file system (errno EROFS)`, its path first."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        name = errno.errorcode.get(exc.errno or 0, "")
        second = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return one_line(f"{exc.filename}{second}: {exc.strerror}" + (f" (errno {name})" if name else ""))
    return one_line(str(exc)) or type(exc).__name__


def _guarded(main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
    def guarded(argv: list[str]) -> object:
        quiet_console(not _VERBOSE.value)
        try:
            return main(argv)
        except user_errors() as exc:
            message = _message(exc)
            log_failure(f"error: {message}", exc)
            if _VERBOSE.value:
                traceback.print_exc()
            raise UsageExit(message) from None

    return guarded


def run(main: Callable[[list[str]], object]) -> None:
    """`absl.app.run` with the config file and keys checked before flag parsing, and the one error path."""
    app.run(_guarded(main), flags_parser=_parse_flags)
