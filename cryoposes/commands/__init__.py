"""Command-line verbs, one module each (``cryoposes VERB``).

Each module has a docstring (its help), ``add_arguments(parser)`` and ``main(args)``. A verb
reports bad input by raising :class:`cryoposes.cli.UsageError` (or ``ValueError`` /
``FileNotFoundError``): the CLI prints the message and exits with status 2.
"""
