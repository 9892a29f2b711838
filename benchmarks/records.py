"""What every results record holds beside its numbers: the exact command, the version and the
machine; and how a record is added to a results file (atomically, replacing one of its name)."""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys
from pathlib import Path

from cryoposes import __version__, provenance


def portable(argument: str) -> str:
    """A command-line argument as another machine can read it: absolute paths made relative to
    the working directory (the repository root), or cut to the file name when outside it."""
    if not os.path.isabs(argument):
        return argument
    relative = os.path.relpath(argument)
    return Path(argument).name if relative.startswith("..") else relative


def header(name: str, profile: str, settings: dict) -> dict:
    """The fields every record starts with: name, profile, command, version, machine, date and
    the settings (paths made portable)."""
    return {
        "name": name,
        "profile": profile,
        "command": shlex.join([Path(sys.executable).name, *map(portable, sys.argv)]),
        "version": __version__,
        "machine": provenance.machine(load=True),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {key: portable(value) if isinstance(value, str) else value for key, value in settings.items()},
    }


def save(output, entry: dict) -> None:
    """Add ``entry`` to the results file ``output`` (``{"runs": [...]}``), replacing a record of
    the same name; written whole or not at all."""
    output = Path(output)
    records = json.loads(output.read_text())["runs"] if output.exists() else []
    records = [record for record in records if record["name"] != entry["name"]] + [entry]
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_suffix(".partial")
    temporary.write_text(json.dumps({"runs": records}, indent=1) + "\n")
    os.replace(temporary, output)
