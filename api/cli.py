"""``evault``: the command line. Each command group lives in its own module and registers here.

Every command finds its configuration the same way (see ``api.config``); commands that touch the
database open it directly, so they work with or without a running ``evault serve`` (on the
embedded server they share the one that is running, or start it for their own duration).

Guarantees:

* ``--data DIR`` and ``--config FILE`` are accepted anywhere: before the command (``evault
  --data D init``) or after it, at any depth (``evault init --data D``, ``evault ledger note
  --data D TEXT``); given twice, the later one wins.
* Start-up imports only what the command run needs: the dispatcher knows every command's name
  and one-line help (:data:`COMMANDS`) and imports only the module that implements the command
  given (``evault --help`` imports none). :func:`build_parser` with no argument registers every
  module (the documentation tests use it); a test keeps :data:`COMMANDS` equal to what the
  modules register.
* Closing standard output early (``evault ledger consistency 1 9 | head``) ends the command
  quietly, with the shell's status for SIGPIPE (141), never with a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from verify.terminal import columns as _columns

# Every top-level command: its module and one-line help (what `evault --help` shows without
# importing any command module).
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("api.cmd_setup", "create the data directory, default config and signing key"),
    "serve": ("api.cmd_serve", "run the service (API, watchers, media workers, checkpointer)"),
    "config-reference": ("api.cmd_setup", "print every configuration key (Markdown)"),
    "ledger": ("api.cmd_ledger", "the Merkle ledger"),
    "timestamps": (
        "api.cmd_anchors",
        "list the checkpoints' RFC 3161 time-stamps; --check verifies every one",
    ),
    "witness": ("api.cmd_witness", "witness key (cosignature/v1 vkey) and cosignatures"),
    "principal": ("api.cmd_access", "people, docks and modules that may act"),
    "token": ("api.cmd_access", "bearer tokens for the API"),
    "case": ("api.cmd_access", "cases and their evidence"),
    "audit": ("api.cmd_access", "the ledger trail of a case, an evidence item or a principal"),
    "retention": ("api.cmd_access", "retention periods, holds and disposal"),
    "adopt-access-state": (
        "api.cmd_access",
        "tag the access rows written before row tags existed (once, right after upgrading)",
    ),
    "ingest": (
        "api.cmd_ingest",
        "acquire files by hand (USB stick, re-import) as if offered by a dock",
    ),
    "export": ("api.cmd_export", "export a case as a package that evault-verify checks offline"),
    "keys": ("api.cmd_keys", "key-encryption keys of encrypted (sealed) content"),
    "scrub": (
        "api.cmd_scrub",
        "re-hash stored objects (originals and renditions) and run the ledger fsck",
    ),
    "localize": (
        "api.cmd_localize",
        "compare a suspect copy with the original's fingerprint: where does it differ?",
    ),
    "backup": ("api.cmd_backup", "a consistent backup: database, ledger, blobs (and key)"),
    "restore": ("api.cmd_backup", "restore a backup into a fresh data directory"),
    "demo": (
        "api.cmd_demo",
        "synthetic recordings → dock → case → package → offline verification",
    ),
}

Handler = Callable[[argparse.Namespace, Any], Any]

_CONFIG_HELP = "configuration file (default: $EVAULT_CONFIG or <data>/evault.toml)"
_DATA_HELP = "data directory (default: $EVAULT_DATA or ./data)"


class _Parser(argparse.ArgumentParser):
    """argparse's parser with the help width given to the formatter (see :func:`_columns`);
    the command modules' subparsers are of this class too."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_columns() - 2)  # type: ignore[call-arg]


def _add_location_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--config`` and ``--data`` on ``parser`` and every parser below it. Below the top they
    default to SUPPRESS, so they set the value only when given there. A parser that defines
    its own ``--data`` (``restore``: the new data directory) keeps it."""
    default = None if top else argparse.SUPPRESS
    options = parser._option_string_actions
    if "--config" not in options:
        parser.add_argument("--config", default=default, help=_CONFIG_HELP)
    if "--data" not in options:
        parser.add_argument("--data", default=default, help=_DATA_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_location_options(child, top=False)


def build_parser(command: str | None = "") -> argparse.ArgumentParser:
    """The parser of ``evault``. ``command=""`` (the default): every command fully registered
    (imports every command module). A command name: only the commands of its module (the
    others cannot be chosen once the command is known). ``None``: every command as a help-only
    placeholder (enough for ``--help`` and for naming the choices of an unknown command)."""
    parser = _Parser(
        prog="evault",
        description="evidence-vault: write-once evidence with a Merkle ledger.",
        allow_abbrev=False,  # the pre-scan in main() must see --data/--config exactly
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = None if command is None else COMMANDS.get(command, ("", ""))[0]
    registered: set[str] = set()
    for name, (module_name, help_) in COMMANDS.items():
        if command == "" or module_name == wanted:
            if module_name not in registered:
                registered.add(module_name)
                importlib.import_module(module_name).register(sub)
        elif command is None:
            sub.add_parser(name, help=help_, add_help=False)
    _add_location_options(parser, top=True)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word that is neither an option nor the value
    of a top-level ``--data``/``--config``."""
    words = iter(argv)
    for word in words:
        if word in ("--data", "--config"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _stdout_closed() -> int:
    """The reader of standard output went away (``| head``): exit quietly, as a filter does.
    Standard output is pointed at /dev/null so the interpreter's final flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)

    from vault.errors import EvaultError

    logs = getattr(args, "logs", True)  # False: the command logs nothing (spares the import)
    if logs:
        from api.logs import setup_logging

        setup_logging("warning")
    try:
        cfg = None
        if not getattr(args, "no_config", False):
            from api.config import load

            cfg = load(args.config, args.data)
            if logs:
                setup_logging(cfg.service.log_level if args.command == "serve" else "warning")
        func: Handler = args.func
        result = func(args, cfg)
        if isinstance(result, types.CoroutineType):
            import asyncio

            result = asyncio.run(result)
        sys.stdout.flush()
        return int(result or 0)
    except EvaultError as exc:
        print(f"evault: {exc.detail}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
