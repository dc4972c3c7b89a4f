"""What the command-line tests share: running a command, a small model's flags and the
``Error:`` contract (one line, status 1, no traceback). Their ``corpus`` fixture is in conftest."""

from __future__ import annotations

from click.testing import CliRunner

from charseq.cli import cli

__all__ = ["SMALL", "assert_error_line", "run"]


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


SMALL = ["--no-progress", "--set", "cell.hidden_size=16", "--set", "train.batch_size=4"]


def assert_error_line(result, message):
    assert result.exit_code == 1, result.output
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert result.output.rstrip("\n").splitlines()[-1].startswith("Error: ")
    assert message in result.output, result.output
