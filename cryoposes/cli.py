"""The ``cryoposes`` command: one sub-command per module of :mod:`cryoposes.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import cryoposes.commands


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit status 2."""


def _verbs():
    for info in sorted(pkgutil.iter_modules(cryoposes.commands.__path__), key=lambda m: m.name):
        yield info.name.replace("_", "-"), importlib.import_module(f"cryoposes.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cryoposes", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cryoposes {cryoposes.__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, module in _verbs():
        summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
        command = sub.add_parser(verb, help=summary, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(run=module.main, command_parser=command)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except (UsageError, ValueError, FileNotFoundError) as error:
        args.command_parser.error(str(error))  # prints usage and the message, exits 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
