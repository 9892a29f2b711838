"""The command line's contract: the user's bad input exits with status 2 and a message; a fault
in cryoposes keeps its traceback."""

import pytest

from cryoposes import cli
from cryoposes.errors import InputError


def _run_with_failing_verb(monkeypatch, error):
    from cryoposes.commands import evaluate

    def failing(args):
        raise error

    monkeypatch.setattr(evaluate, "main", failing)
    return cli.main(["evaluate", "a.star", "b.star"])


def test_input_errors_exit_2_with_the_message(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_with_failing_verb(monkeypatch, InputError("a.star: missing column rlnAngleRot"))
    assert exit_info.value.code == 2
    assert "a.star: missing column rlnAngleRot" in capsys.readouterr().err


def test_other_errors_are_not_disguised_as_usage_errors(monkeypatch):
    # A ValueError from inside the library is a bug: it must reach the user with its traceback.
    with pytest.raises(ValueError, match="operands could not be broadcast"):
        _run_with_failing_verb(monkeypatch, ValueError("operands could not be broadcast"))
