"""Command-line verbs, one module each (``cryoposes VERB``).

Each module has a docstring (its help), ``add_arguments(parser)`` and ``main(args)``. Building
the parser imports only light modules (:mod:`cryoposes.options` for the choices), so help answers
at once; a verb imports the heavy ones inside ``main``. A verb reports bad input by raising
:class:`cryoposes.errors.InputError` (or ``FileNotFoundError``): the command line prints the
message and exits with status 2.
"""
