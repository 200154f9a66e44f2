"""What the deployment checks compare against: the real CLI, Ray's CLI and the settings read.

A command line from a compose file or a manifest is checked by parsing it with the command it
names (the installed Typer app for `lcw-sweep`, Ray's click CLI for `ray`), exactly as the
process would at start, without running it. Environment variables are checked against what the
code reads: ``Settings`` fields, ``os.environ`` reads in lcw/, service/ and workers/, and the
CLI's ``envvar=`` options.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from service.cli import app
from service.config import Settings

REPO = Path(__file__).resolve().parents[2]

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}; `$$` is a literal dollar."""
    env = env or {}

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in env:
            return env[name]
        if op in (":-", "-"):
            return arg
        return f"<{name}>"  # required: stands for the value the .env file gives

    return _INTERPOLATION.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def variables_in(text: str) -> Iterator[tuple[str, str | None]]:
    """(name, operator) of every ${...} in `text` (operator ':?' marks a required one)."""
    for match in _INTERPOLATION.finditer(text.replace("$$", "")):
        yield match["name"], match["op"]


def split_shell(script: str) -> list[list[str]]:
    """`a && exec b` -> [[a...], [b...]] (the only shell the deploy files use)."""
    commands = []
    for part in script.split("&&"):
        argv = shlex.split(part)
        if argv and argv[0] == "exec":
            argv = argv[1:]
        commands.append(argv)
    return commands


def parse_lcw(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse `lcw-sweep ARGS` with the real app; returns (command path, parsed params).

    Raises the CLI's own usage error for an unknown command or option, or a bad value.
    """
    group = typer.main.get_command(app)
    words = list(argv)
    path = []
    command: Any = group
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        if name not in command.commands:
            raise AssertionError(f"lcw-sweep has no command {' '.join([*path, name])!r}")
        path.append(name)
        command = command.commands[name]
    ctx = command.make_context(" ".join(["lcw-sweep", *path]), words)
    return " ".join(path), dict(ctx.params)


@functools.cache
def _ray_cli() -> Any:
    from ray.scripts.scripts import cli

    return cli


def parse_ray(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse `ray SUBCOMMAND ARGS` with Ray's own CLI (click)."""
    cli = _ray_cli()
    name, *rest = argv
    if name not in cli.commands:
        raise AssertionError(f"ray has no command {name!r}")
    ctx = cli.commands[name].make_context(f"ray {name}", rest)
    return name, dict(ctx.params)


def parse_argv(argv: list[str]) -> tuple[str, str, dict[str, Any]]:
    """(program, command, params) for an `lcw-sweep ...` or `ray ...` argv."""
    program, *rest = argv
    if program == "lcw-sweep":
        return (program, *parse_lcw(rest))
    if program == "ray":
        return (program, *parse_ray(rest))
    raise AssertionError(f"unexpected program {program!r} in {argv}")


@functools.cache
def env_vars_read() -> frozenset[str]:
    """Every LCW_* variable the code reads."""
    names = {f"LCW_{field.upper()}" for field in Settings.model_fields}
    pattern = re.compile(r"environ(?:\.get)?[\[(]\s*\"(LCW_[A-Z0-9_]+)\"")
    for package in ("lcw", "service", "workers"):
        for path in (REPO / package).rglob("*.py"):
            names |= set(pattern.findall(path.read_text()))
    for command in _all_commands(typer.main.get_command(app)):
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            for name in [envvar] if isinstance(envvar, str) else envvar or []:
                names.add(name)
    return frozenset(names)


def _all_commands(group: Any) -> Iterator[Any]:
    for command in getattr(group, "commands", {}).values():
        yield command
        yield from _all_commands(command)


@functools.cache
def ray_env_vars_known() -> frozenset[str]:
    """RAY_* names that Ray's Python sources mention (where Ray reads or documents them)."""
    import ray

    root = Path(ray.__file__).parent
    found: set[str] = set()
    for path in [
        *root.glob("*.py"),
        *(root / "_private").rglob("*.py"),
        *(root / "_common").rglob("*.py"),
    ]:
        found |= set(re.findall(r"\b(RAY_[A-Z0-9_]+)\b", path.read_text(errors="replace")))
    return frozenset(found)
