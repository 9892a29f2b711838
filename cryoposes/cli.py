"""The ``cryoposes`` command: one sub-command per module of :mod:`cryoposes.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import cryoposes.commands
from cryoposes.errors import InputError


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
    except (InputError, FileNotFoundError) as error:
        # The user's mistake: usage and the message, exit status 2. Any other exception is a
        # fault in cryoposes and keeps its traceback (exit status 1).
        args.command_parser.error(str(error))
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
