"""The console script. ``emit`` and a piped ``replay`` take fast paths; the rest goes through
typer.

Before any of them sees the arguments, the global options are moved in front of the command
name, so that ``evflow log --db x.db`` means what ``evflow --db x.db log`` does (and the error
hint "run again with --traceback" is true wherever the option is put).
"""

from __future__ import annotations

import os
import sys

#: global options that take a value, and global flags
GLOBAL_VALUES = ("--db", "--rules")
GLOBAL_FLAGS = ("--traceback", "--no-pager")


def normalize(args: list[str]) -> list[str]:
    """Global options first, wherever they were given; a ``--format`` given before the command
    name moves after it (each command knows its own formats)."""
    front: list[str] = []
    rest: list[str] = []
    formats: list[str] = []
    command_seen = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in GLOBAL_VALUES and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 2
            continue
        if arg.startswith(tuple(f"{name}=" for name in GLOBAL_VALUES)) or arg in GLOBAL_FLAGS:
            front.append(arg)
        elif not command_seen and arg == "--format" and i + 1 < len(args):
            formats += [arg, args[i + 1]]
            i += 2
            continue
        elif not command_seen and arg.startswith("--format="):
            formats.append(arg)
        else:
            if not arg.startswith("-"):
                command_seen = True
            rest.append(arg)
        i += 1
    if formats and "--" in rest:
        at = rest.index("--")
        rest[at:at] = formats
    else:
        rest += formats
    return front + rest


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _completion(args: list[str]) -> int:
    """``--show-completion [SHELL]`` / ``--install-completion [SHELL]`` (bash, zsh, fish)."""
    from typer._completion_shared import get_completion_script, install

    shell = args[1] if len(args) > 1 else None
    if shell is None:
        try:
            import shellingham

            shell = shellingham.detect_shell()[0]
        except Exception:  # noqa: BLE001 - no detectable shell: fall back to $SHELL
            shell = os.path.basename(os.environ.get("SHELL", "bash"))
    if shell not in ("bash", "zsh", "fish", "powershell", "pwsh"):
        print(f"evflow: error: unsupported shell {shell!r} (bash, zsh or fish)", file=sys.stderr)
        return 2
    if args[0] == "--show-completion":
        print(
            get_completion_script(prog_name="evflow", complete_var="_EVFLOW_COMPLETE", shell=shell)
        )
        return 0
    _, path = install(shell=shell, prog_name="evflow", complete_var="_EVFLOW_COMPLETE")
    print(f"{shell} completion installed in {path}; it takes effect in a new shell")
    return 0


def _quiet_stdout() -> None:
    """After the reader of our output went away: nothing more to say, and no complaint when
    Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    args = normalize(list(sys.argv[1:] if argv is None else argv))
    try:
        status = _main(args)
    except BrokenPipeError:
        # `evflow log | head -1`: a closed pipe is the reader saying it has enough
        _quiet_stdout()
        status = 0
    sys.exit(status)


def _main(args: list[str]) -> int:
    if args[:1] == ["--version"]:
        print(f"evflow {_version()}")
        return 0
    if args[:1] in (["--show-completion"], ["--install-completion"]):
        return _completion(args)
    from evflow.cli.emit import fast_main

    status = fast_main(args)
    if status is None:
        from evflow.cli.app import run

        status = run(args)
    return status
