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
    """The ``cryoposes`` argument parser: one sub-command per module of :mod:`cryoposes.commands`.

    The module ``train_distance`` becomes the verb ``train-distance``: its docstring is the help,
    its ``add_arguments(parser)`` declares the options and its ``main(args)`` runs it. Parsed
    arguments carry ``run`` (that ``main``) and ``command_parser`` (the verb's parser).

    Returns
    -------
    argparse.ArgumentParser
        The parser; ``parse_args`` exits with status 2 on a usage error.

    Examples
    --------
    >>> from cryoposes.cli import build_parser
    >>> args = build_parser().parse_args(["simulate", "5j0n", "-n", "10", "--size", "32", "--seed", "0", "-o", "out"])
    >>> args.verb, args.n, args.size, args.snr_db
    ('simulate', 10, 32, None)
    """
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
    """Run the ``cryoposes`` command line.

    The user's bad input (:class:`~cryoposes.errors.InputError`, ``FileNotFoundError``) prints
    the usage and the message and exits with status 2; any other exception is a fault in
    cryoposes and keeps its traceback (exit status 1).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``cryoposes``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The verb's exit status, 0 on success.

    Raises
    ------
    SystemExit
        Status 2 on a usage error or bad input; status 0 after ``--help`` or ``--version``.

    Examples
    --------
    >>> import tempfile
    >>> from cryoposes.cli import main
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     status = main(["simulate", "5j0n", "-n", "2", "--size", "16", "--seed", "0", "--quiet",
    ...                    "-o", f"{folder}/data"])  # doctest: +ELLIPSIS
    wrote 2 particles of 5j0n (16×16 px, ... Å/px) to .../data/particles.mrcs and .../data/particles.star
    >>> status
    0
    >>> main(["evaluate", "no-such.star", "no-such-either.star"])
    Traceback (most recent call last):
    SystemExit: 2
    """
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
