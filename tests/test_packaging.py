"""Set-up files agree with each other."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements):
    return {re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            for requirement in requirements}


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = set(project["dependencies"]) | set(project["optional-dependencies"]["book"]) | set(
        project["optional-dependencies"]["test"]
    )
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    listed = {line for line in pip_section if not line.startswith("-e")}
    assert _names(listed) == _names(expected)
    assert listed == expected, "same names, but version specifiers differ"
    assert "-e ." in pip_section


def test_command_line_lists_every_verb():
    from cryoposes.cli import build_parser

    help_text = build_parser().format_help()
    for module in (ROOT / "cryoposes" / "commands").glob("[a-z]*.py"):
        assert module.stem.replace("_", "-") in help_text


def test_building_the_parser_does_not_import_tensorflow():
    """`cryoposes VERB --help` must answer at once: heavy imports belong inside each verb's main."""
    import subprocess
    import sys

    code = "import sys, cryoposes.cli as c; c.build_parser(); print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
