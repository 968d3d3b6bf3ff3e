"""Command-line plumbing shared by every `launch/` entry point: the `--config` flag and its validation.

Every launch module is a thin absl main:

    _CONFIG = cli.define_config_flag()

    def main(argv):
        cfg = cli.parsed_config(_CONFIG)
        ...

    if __name__ == "__main__":
        cli.run(main)

`cli.run` checks every `--config.a.b=v` override against the `RunConfig` tree *before* absl parses the flags, so
a misspelt key stops the program (exit status 2) with a message naming the key and the nearest valid ones, before
any work. `parsed_config` then runs `config.validate` and turns a `ConfigError` into the same kind of exit, and
points JAX's persistent compilation cache at `config.compile_cache` (`use_compile_cache`): programs compiled by
one run are loaded from disk by the next (on the toy's CPU search, half of a fresh process's time is compiling).
A torn entry left by a killed process only costs a warning and a recompile (JAX checks what it reads).
"""

import dataclasses
import difflib
import os
import sys
import typing
from collections.abc import Callable, Sequence

from absl import app
from ml_collections import config_flags

from rstar_jax.config import ConfigError, RunConfig, validate

__all__ = ["UsageExit", "check_override_keys", "define_config_flag", "parsed_config", "run", "use_compile_cache"]

_FLAG = "config"


class UsageExit(SystemExit):
    """Exit status 2 with a one-paragraph message on stderr (bad command line or config)."""

    def __init__(self, message: str):
        print(f"error: {message}", file=sys.stderr)
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


def _parse_flags(argv: list[str]) -> list[str]:
    check_override_keys(argv)
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        raise UsageExit(str(e)) from None


def parsed_config(holder: typing.Any) -> RunConfig:
    """The validated config behind `--config`; exits with status 2 and a message naming the key when invalid."""
    cfg = holder.value
    if cfg is None:
        raise UsageExit(f"--{_FLAG}=configs/<name>.py is required (e.g. --{_FLAG}=configs/tiny.py).")
    try:
        cfg = validate(cfg)
    except ConfigError as e:
        raise UsageExit(f"invalid config ({config_flags.get_config_filename(holder)}): {e}") from None
    use_compile_cache(cfg.compile_cache)
    return cfg


def use_compile_cache(path: str) -> None:
    """Every compiled program is written to (and first looked up in) `path` ('' = JAX's default: no cache)."""
    if not path:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the toy's programs compile in < 1 s


def run(main: Callable[[list[str]], object]) -> None:
    """`absl.app.run` with config-key checking before flag parsing."""
    app.run(main, flags_parser=_parse_flags)
