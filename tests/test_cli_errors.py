"""Every subcommand, walked through a table of bad inputs: each gives its exit code
(tools/exit_codes.py) and a one-line message that names what is wrong - never a
traceback, never a success with nothing done."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jetstore.engine import Instance
from jetstore.tools import exit_codes
from jetstore.tools.cli import main

USAGE, FAILED, DAMAGED = exit_codes.USAGE, exit_codes.FAILED, exit_codes.DAMAGED

# (arguments, exit code, text the message must hold); {tmp} is a fresh directory,
# {file} a regular file in it, {empty} an empty directory, {db} a closed instance,
# {bk} a good backup of it.
BAD_INPUTS = [
    (["bogus"], USAGE, "invalid choice: 'bogus'"),
    (["demo", "{file}"], USAGE, "exists and is not an empty directory"),
    (["demo", "{db}"], USAGE, "exists and is not an empty directory"),
    (["demo", "--seconds", "-1"], USAGE, "-1 is not from 0 to 3600 seconds"),
    (["demo", "--seconds", "1e308"], USAGE, "1e308 is not from 0 to 3600 seconds"),
    (["demo", "--seconds", "x"], USAGE, "'x' is not a number"),
    (["serve", "{tmp}/no/such/dir"], USAGE, "does not exist (create it first)"),
    (["serve", "{file}"], USAGE, "not a directory"),
    (["torture", "{file}"], USAGE, "not a directory"),
    (["torture", "{tmp}/t", "--trials", "-1"], USAGE, "-1 is not a positive whole number"),
    (["torture", "{tmp}/t", "--trials", "0"], USAGE, "0 is not a positive whole number"),
    (["torture", "{tmp}/t", "--seconds", "-5"], USAGE, "-5 is not a positive number"),
    (["torture", "{tmp}/t", "--clients", "0"], USAGE, "0 is not a positive whole number"),
    (["torture", "{tmp}/t", "--open-close", "0"], USAGE, "0 is not a positive whole number"),
    (["restore", "{tmp}/missing", "{tmp}/out"], USAGE, "missing: no such directory"),
    (["restore", "{empty}", "{tmp}/out"], FAILED, "holds no backup: no MANIFEST"),
    (["restore", "{empty}", "{tmp}/x/out"], USAGE, "does not exist (create it first)"),
    (["restore", "{empty}", "{tmp}/out", "--log-dir", "{tmp}/nope"], USAGE, "nope: no such"),
    (["restore", "{bk}", "{tmp}/out", "--log-dir", "{empty}"], FAILED, "no log generation"),
    (["restore", "{bk}", "{db}"], FAILED, "JET_errInvalidPath"),
    (["restore", "{bk}", "{tmp}/out", "--until", "2026-12-05T10:00:00"], USAGE, "no time zone"),
    (["restore", "{bk}", "{tmp}/out", "--until", "soon"], USAGE, "is neither an LSN"),
    (["restore", "{bk}", "{tmp}/out", "--until", "-7"], USAGE, "-7 is a negative LSN"),
    (["restore", "{bk}", "{tmp}/out", "--until", "1_000"], USAGE, "neither an LSN"),
    (["restore", "{bk}", "{tmp}/out", "--until", "0b101"], USAGE, "neither an LSN"),
    (["restore", "{bk}", "{tmp}/out", "--until", str(1 << 64)], USAGE, "an LSN past 64 bits"),
    (["restore", "{bk}", "{tmp}/out", "--until", "1", "--json"], FAILED, "RestoreLogTooLow"),
    (["verify-backup", "{tmp}/missing"], USAGE, "missing: no such directory"),
    (["verify-backup", "{empty}"], FAILED, "holds no backup: no MANIFEST"),
    (["verify-backup", "{file}"], USAGE, "not a directory"),
    (["restore", "{file}", "{tmp}/out"], USAGE, "not a directory"),
    (["restore", "{bk}", "{tmp}/out", "--log-dir", "{file}"], USAGE, "not a directory"),
    (["serve", "{tmp}/s", "--control", "tcp://0.0.0.0:1"], USAGE, "only tcp://127.0.0.1:PORT"),
    (["serve", "{tmp}/s", "--control", "tcp://127.0.0.1:99999"], USAGE, "PORT from 1 to"),
    (["serve", "{tmp}/s", "--backup-root", "{tmp}/none"], USAGE, "none: no such directory"),
    (["inspect", "log", "{file}"], FAILED, "not named like a log generation file"),
    (["inspect", "log", "{empty}"], FAILED, "no log generation file in it"),
    (["inspect", "header", "{tmp}/missing"], USAGE, "missing: no such file or directory"),
    (["inspect", "verify", "{file}"], FAILED, "is not a jetstore database"),
    (["inspect", "header", "{file}"], FAILED, "is not a jetstore database"),
    (["inspect", "nonsense", "{db}"], USAGE, "invalid choice: 'nonsense'"),
    (["load", "{tmp}/l", "--clients", "0"], USAGE, "0 is not from 1 to 126"),
    (["load", "{tmp}/l", "--clients", "1000"], USAGE, "1000 is not from 1 to 126"),
    (["load", "{file}"], USAGE, "not a directory"),
    (["load", "{tmp}/l", "--bogus"], USAGE, "jetstore load: error: unrecognized arguments"),
    (["corrupt", "--trials", "0"], USAGE, "0 is not a positive whole number"),
    (["corrupt", "--workdir", "{file}"], USAGE, "not a directory"),
    (["ctl", "{empty}", "status"], exit_codes.NO_INSTANCE, "no instance is running"),
    (["ctl", "{empty}", "set-backup-rate", "ten"], USAGE, "ten"),
    (["ctl", "{db}", "backup", "{tmp}/bk-missing"], USAGE, "does not exist"),
    (["keygen", "{file}"], USAGE, "not a directory"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "file").write_text("root:x:0:0:root:/root:/bin/bash\n" * 200)
    (tmp / "empty").mkdir()
    (tmp / "bk").mkdir()
    with Instance.open(tmp / "db") as inst:
        inst.backup(tmp / "bk")
    return {name: str(tmp / name) for name in ("file", "empty", "db", "bk")} | {"tmp": str(tmp)}


@pytest.mark.parametrize(
    ("arguments", "code", "text"), BAD_INPUTS, ids=[" ".join(a) for a, _c, _t in BAD_INPUTS]
)
def test_bad_input_gives_its_exit_code_and_one_line(places, capsys, arguments, code, text):
    argv = [argument.format(**places) for argument in arguments]
    try:
        result = main(argv)
    except SystemExit as exit_:
        result = exit_.code
    out, err = capsys.readouterr()
    assert result == code, err
    assert text in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) <= 2  # the error, and for usage the --help hint


def test_every_command_has_examples_and_exit_codes_in_its_help(capsys):
    commands = ["", "demo", "ctl", "restore", "verify-backup", "serve", "inspect", "torture"]
    for command in [*commands, "load", "corrupt", "keygen"]:
        with pytest.raises(SystemExit) as done:
            main([*command.split(), "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and "Exit codes:" in text, command


def test_json_puts_one_document_on_stdout_and_the_text_on_stderr(tmp_path, capsys):
    assert main(["torture", str(tmp_path), "--open-close", "2", "--json"]) == exit_codes.OK
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["leaks"] == [] and "RSS after the warm-up" in err


def test_version_and_the_module_entry_point_run_the_same_command():
    from jetstore.engine import __version__

    done = subprocess.run(
        [sys.executable, "-m", "jetstore.tools", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == f"jetstore {__version__}"


def test_output_into_a_closed_pipe_is_no_traceback(places):
    command = [sys.executable, "-m", "jetstore.tools", "inspect", "log", places["db"], "--json"]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # as `| head` does once it has its lines
    err = reader.stderr.read().decode()
    assert reader.wait() == FAILED and "Traceback" not in err and "BrokenPipe" not in err
