"""The command line builds only the parser of the command it runs: the same help texts and errors as
the full parser, without importing the other commands' modules (torch, scipy, highway-env)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_drive.cli import COMMANDS, SUMMARIES, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _sub(parser):
    return next(a for a in parser._actions if a.dest == "command")


@pytest.fixture(scope="module")
def full():
    return build_parser()


def test_summaries_are_the_commands_own_help_lines_and_the_program_help_is_unchanged(full):
    lines = {a.dest: a.help for a in _sub(full)._choices_actions}
    assert list(lines) == list(COMMANDS) == list(SUMMARIES)
    assert lines == SUMMARIES
    lazy = build_parser([])
    assert lazy.format_help() == full.format_help()
    assert list(_sub(lazy).choices) == list(COMMANDS)


def test_each_command_built_alone_has_the_full_parsers_help_and_arguments(full):
    for name in COMMANDS:
        alone = _sub(build_parser([name])).choices[name]
        assert alone.format_help() == _sub(full).choices[name].format_help(), name
    args = build_parser(["validate"]).parse_args(["validate", "a.toml", "b.toml"])
    assert args.files == ["a.toml", "b.toml"] and args.func.__name__ == "_cmd_validate"


def test_bad_commands_still_exit_2_with_argparse_s_one_line_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid choice: 'no-such-command'" in err and "'export-minari'" in err and "'validate'" in err
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2 and "required: COMMAND" in capsys.readouterr().err
    assert main(["validate", str(ROOT / "no_such_file.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "e2e-drive validate: error:" in err[0] and "no_such_file.toml" in err[0]


def test_a_light_command_imports_neither_torch_nor_scipy():
    code = ("import sys; from e2e_drive.cli import main; "
            "rc = main(['validate', 'envs/abilities/cut_in.toml']); "
            "print(rc, 'torch' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip().splitlines()[-1] == "0 False False"
