"""``python -m cryoposes``: the same as the ``cryoposes`` command."""

from cryoposes.cli import main

raise SystemExit(main())
