"""What ``jetstore ctl`` prints and the codes it exits with (issue 14), and ``jetstore keygen``.

Against a real instance (tmp_path): ping, status, checkpoint, set-backup-rate and
backup as text for people and as one JSON document with ``--json`` - LSNs in the
notation ``jetstore inspect`` prints, their decimal value beside it in JSON, times
as ISO-8601, rounded figures - and the backup's progress as plain lines when stderr
is not a terminal.  Without one: every usage error is one line and exit code 2
(before any instance is looked for), a missing instance is 4.  Sizes take the
suffixes ``load`` takes.  ``keygen`` writes keys that ``load_curve_key`` loads, that
a served instance and ``ctl`` then use over tcp, and never overwrites one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import stat
import subprocess

import pytest
import zmq.auth
from test_control import CLI, OPTIONS, allow_list, fill, free_port, run_cli, server_key_file

from jetstore.actors.control import load_curve_key
from jetstore.engine import Instance
from jetstore.engine.log_format import format_lsn
from jetstore.protocol import codec
from jetstore.tools import ctl, exit_codes, keygen, output
from jetstore.tools.sizes import SizeError, parse_size

LSN_TEXT = r"\(0x[0-9a-f]+,0x[0-9a-f]+\)"
ISO_SECONDS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def parser_with(tool) -> argparse.ArgumentParser:
    """A ``jetstore`` parser holding just ``tool``'s subcommand (cli.py wires them all)."""
    parser = argparse.ArgumentParser(prog="jetstore")
    tool.add_parser(parser.add_subparsers(dest="tool", required=True))
    return parser


def run_in_process(tool, *argv) -> int:
    args = parser_with(tool).parse_args([str(a) for a in argv])
    return args.func(args)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An instance with table "t" and some commits, open for the module's tests."""
    path = tmp_path_factory.mktemp("ctl") / "src"
    inst = Instance.open(path, **OPTIONS)
    inst.session().create_table("t")
    fill(inst, 0, 200)
    yield inst
    inst.close()


def ctl_run(target, *args) -> subprocess.CompletedProcess:
    return run_cli("ctl", target, *args)


def ctl_ok(target, *args) -> str:
    done = ctl_run(target, *args)
    assert done.returncode == exit_codes.OK, (done.returncode, done.stdout, done.stderr)
    return done.stdout


def ctl_json(target, *args):
    return json.loads(ctl_ok(target, *args, "--json"))  # one document, or this fails


# -- against a real instance -------------------------------------------------------------------


def test_ping_as_text_and_as_json(served):
    assert ctl_ok(served.path, "ping") == f"pong: {served.path} answers (protocol 1)\n"
    assert ctl_json(served.path, "ping") == {
        "pong": True,
        "protocol": codec.PROTOCOL_VERSION,
        "path": served.path,
    }


def test_checkpoint_as_text_and_as_json(served):
    taken = ctl_json(served.path, "checkpoint")
    assert type(taken["checkpoint_lsn"]) is int and taken["checkpoint_lsn"] > 0
    assert taken["checkpoint_lsn_text"] == format_lsn(taken["checkpoint_lsn"])
    assert set(taken) == {"seq", "checkpoint_lsn", "checkpoint_lsn_text"}
    text = ctl_ok(served.path, "checkpoint")
    match = re.fullmatch(rf"checkpoint (\d+) at ({LSN_TEXT})\n", text)
    assert match, text
    assert int(match[1]) > taken["seq"]
    assert match[2] == format_lsn(taken["checkpoint_lsn"])  # nothing committed in between


def walk(document, path=()):
    """Every (key path, value) of a JSON document."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*path, key), value
            yield from walk(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from walk(value, (*path, index))


def test_status_as_text_and_as_json(served, tmp_path):
    (tmp_path / "bk").mkdir()
    ctl_ok(served.path, "backup", tmp_path / "bk")
    status = ctl_json(served.path, "status")

    texts = 0
    for where, value in walk(status):
        key = where[-1]
        if isinstance(key, str) and output.is_lsn(key):
            sibling = status
            for step in where[:-1]:
                sibling = sibling[step]
            assert value is None or type(value) is int, where
            assert sibling[f"{key}_text"] == (None if value is None else format_lsn(value))
            texts += value is not None
        if isinstance(value, float):
            assert value == round(value, 2), where
    assert texts >= 4  # checkpoint, durable, log end, the backup's mark...
    full = status["backups"]["last_full"]
    moment = datetime.datetime.fromisoformat(full["time"].replace("Z", "+00:00"))
    assert abs(moment.timestamp() - full["time_ns"] / 1e9) < 0.001

    text = ctl_ok(served.path, "status")
    lines = text.splitlines()
    assert lines[0] == f"instance {served.path}"
    for name in ("buffer_manager", "log_writer", "backup_worker"):
        assert re.search(rf"^  {name} +pid \d+ +alive ", text, re.M), text
    bm = status["buffer_manager"]
    assert re.search(
        rf"^  checkpoint +\d+ at {re.escape(format_lsn(bm['checkpoint_lsn']))}$", text, re.M
    ), text
    assert re.search(rf"^  last full +generations \d+\.\.\d+ at {ISO_SECONDS}$", text, re.M), text
    assert not re.search(r"\d{12,}", text), text  # no raw time_ns or decimal LSN
    assert not re.search(r"\d\.\d{3,}", text), text  # no unrounded float
    assert not re.search(r"(?<![(,])0x[0-9a-f]{5,}", text), text  # no other LSN notation


def test_set_backup_rate_takes_size_suffixes(served):
    assert ctl_json(served.path, "set-backup-rate", "10M", "--min-rate", "512k") == {
        "rate": 10 << 20,
        "min_rate": 512 << 10,
    }
    assert ctl_json(served.path, "status")["backup_worker"]["min_rate"] == 512 << 10
    text = ctl_ok(served.path, "set-backup-rate", "1G", "--min-rate", "0")
    assert text == "backup rate 1,024.0 MiB/s (1,073,741,824 bytes/s); floor none\n"
    assert ctl_ok(served.path, "set-backup-rate", "0") == "backup rate unlimited; floor none\n"
    for bad in (("fast",), ("10X",), ("-1",), ("1", "--min-rate", "1e3")):
        done = ctl_run(served.path, "set-backup-rate", *bad)
        assert done.returncode == exit_codes.USAGE, (bad, done.stderr)
        assert "is not a size" in one_line(done.stderr) and done.stdout == "", bad


def test_backup_progress_is_plain_lines_off_a_terminal(served, tmp_path):
    (tmp_path / "plain").mkdir()
    done = ctl_run(served.path, "backup", tmp_path / "plain")
    assert done.returncode == exit_codes.OK, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("backup ") for line in lines), lines
    assert lines[-1].endswith("- complete") and "(100%)" in lines[-1], lines
    assert {"pages", "logs"} <= {line.split()[1].rstrip(":") for line in lines}, lines
    out = done.stdout.splitlines()
    assert out[0] == f"full backup into {tmp_path / 'plain'}: complete", out
    assert re.fullmatch(rf"  generations +\d+\.\.\d+, rolled at {LSN_TEXT}", out[2]), out

    (tmp_path / "quiet").mkdir()
    quiet = ctl_run(served.path, "backup", tmp_path / "quiet", "--json")
    assert quiet.returncode == exit_codes.OK and quiet.stderr == "", quiet.stderr
    result = json.loads(quiet.stdout)
    assert result["roll_lsn_text"] == format_lsn(result["roll_lsn"])


def test_output_into_a_closed_pipe_is_no_traceback(served):
    reader, writer = os.pipe()
    os.close(reader)  # closed before ctl writes: its write fails, always
    try:
        done = subprocess.run(
            [*CLI, "ctl", served.path, "status"],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(writer)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


# -- exit codes and usage errors, without an instance --------------------------------------------


USAGE_ERRORS = [
    (("ping", "extra"), "ping takes no argument 'extra'"),
    (("status", "--atomic"), "status takes no --atomic"),
    (("checkpoint", "--min-rate", "1M"), "checkpoint takes no --min-rate"),
    (("backup",), "needs a destination"),
    (("backup", "{tmp}/missing"), "does not exist: create it first (mkdir -p {tmp}/missing)"),
    (("backup", "{tmp}/file"), "is not a directory"),
    (("backup", "{tmp}", "--incremental", "--atomic"), "not both"),
    (("set-backup-rate",), "needs a RATE"),
    (("set-backup-rate", "fast"), "'fast' is not a size"),
    (("set-backup-rate", "1", "--min-rate", "x"), "--min-rate: 'x' is not a size"),
    (("set-backup-rate", str(1 << 64)), "too large"),
    (("ping", "--timeout", "0"), "--timeout 0"),
]


@pytest.mark.parametrize("argv, message", USAGE_ERRORS)
def test_usage_errors_are_one_line_and_code_2(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("not a directory")
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    # The target has no instance: a usage error is found before one is looked for.
    assert run_in_process(ctl, "ctl", tmp_path, *argv) == exit_codes.USAGE
    out, err = capsys.readouterr()
    line = one_line(err)
    assert line.startswith("jetstore ctl: ") and message.format(tmp=tmp_path) in line, line
    assert out == ""
    assert "create_path_if_not_exist" not in line  # what the CLI cannot pass


def test_usage_error_through_the_cli_and_no_instance(tmp_path):
    done = ctl_run(tmp_path, "set-backup-rate", "10Q")
    assert done.returncode == exit_codes.USAGE and "10Q" in one_line(done.stderr)
    done = ctl_run(tmp_path, "ping")
    assert done.returncode == exit_codes.NO_INSTANCE == 4
    assert f"jetstore serve {tmp_path}" in one_line(done.stderr)


def test_help_explains_target_flags_examples_and_exit_codes():
    parser = parser_with(ctl)
    ctl_parser = ctl.add_parser(argparse.ArgumentParser().add_subparsers())
    for action in ctl_parser._actions:  # TARGET, ARG, --incremental, --atomic...
        assert action.help and len(action.help) > 10, action.option_strings or action.dest
    shown = run_cli("ctl", "--help").stdout
    flat = " ".join(shown.split())
    assert "TARGET is the instance directory" in flat and "tcp://127.0.0.1:PORT" in flat
    assert "--incremental backup: copy only the log generations" in flat
    assert "--atomic backup: a full backup that replaces" in flat
    assert (
        "Exit codes: 0 ok, 1 the operation failed (the ESE error is printed), 2 usage, "
        "4 no instance at TARGET, 5 timed out, 6 busy (a backup is running), "
        "7 CURVE key refused, 130 interrupted." in flat
    )
    assert "examples:" in shown
    examples = shown.split("examples:\n")[1].split("\n\n")[0].replace("\\\n", " ")
    commands = [line.split("&&")[-1].split() for line in examples.splitlines()]
    assert len(commands) == len(ctl.EXAMPLES) >= 5
    for words in commands:  # each example parses, with values its command accepts
        assert words[:2] == ["jetstore", "ctl"], words
        args = parser.parse_args(shlex.split(" ".join(words[1:])))
        if args.command != "backup":  # a backup's DEST must exist: checked when run
            ctl.request_body(ctl.COMMANDS[args.command], args)


# -- sizes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [
        ("512", 512),
        ("0", 0),
        ("4k", 4 << 10),
        ("4K", 4 << 10),
        ("10M", 10 << 20),
        ("10MB", 10 << 20),
        ("10MiB", 10 << 20),
        ("1G", 1 << 30),
        ("1.5M", 3 << 19),
        (" 2g ", 2 << 30),
        ("100B", 100),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "fast", "-1", "1e3", "10X", "1..5", "5iB", "10 M B"])
def test_parse_size_refuses(text):
    with pytest.raises(SizeError) as refused:
        parse_size(text)
    assert isinstance(refused.value, ValueError) and repr(text) in str(refused.value)


def test_json_document_conventions():
    reply = {
        "checkpoint_lsn": (3 << 32) | 0x1000,
        "oldest_snapshot_lsn": None,
        "lsn_mark": 1 << 32,
        "records": [{"time_ns": 1_700_000_000_123_456_789, "seconds": 0.123456}],
        "signature": b"\x01\xff",
        "commits_per_s": 12.0,
    }
    assert output.json_document(reply) == {
        "checkpoint_lsn": (3 << 32) | 0x1000,
        "checkpoint_lsn_text": "(0x3,0x1000)",
        "oldest_snapshot_lsn": None,
        "oldest_snapshot_lsn_text": None,
        "lsn_mark": 1 << 32,
        "lsn_mark_text": "(0x1,0x0)",
        "records": [
            {
                "time_ns": 1_700_000_000_123_456_789,
                "time": "2023-11-14T22:13:20.123456Z",
                "seconds": 0.12,
            }
        ],
        "signature": "01ff",
        "commits_per_s": 12.0,
    }


# -- keygen ----------------------------------------------------------------------------------------


def test_keygen_writes_a_loadable_pair_and_never_overwrites(tmp_path, capsys):
    keys = tmp_path / "keys"
    assert run_in_process(keygen, "keygen", keys, "--json") == exit_codes.OK
    written = json.loads(capsys.readouterr().out)
    public_file, secret_file = str(keys / "client.key"), str(keys / "client.key_secret")
    assert (written["public_file"], written["secret_file"]) == (public_file, secret_file)
    public, secret = load_curve_key(secret_file, "client key", secret=True)
    assert load_curve_key(public_file, "client key")[0] == public == written["public_key"].encode()
    assert zmq.curve_public(secret) == public
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700

    before = {name: (keys / name).read_bytes() for name in os.listdir(keys)}
    assert run_in_process(keygen, "keygen", keys) == exit_codes.USAGE
    out, err = capsys.readouterr()
    assert "exists already" in one_line(err) and public_file in err and out == ""
    assert {name: (keys / name).read_bytes() for name in os.listdir(keys)} == before

    # another name beside it is fine; the secret half alone in the way refuses too
    (keys / "other.key_secret").write_text("mine")
    assert run_in_process(keygen, "keygen", keys, "--name", "other") == exit_codes.USAGE
    assert not (keys / "other.key").exists()
    assert run_in_process(keygen, "keygen", keys, "--name", "third") == exit_codes.OK
    assert load_curve_key(keys / "third.key_secret", "third", secret=True)[0] != public


@pytest.mark.parametrize(
    "argv, message",
    [
        (("{tmp}/no/such/dir",), "does not exist"),
        (("{tmp}/file",), "is not a directory"),
        (("{tmp}/keys", "--name", "../escape"), "--name"),
        (("{tmp}", "--server", "--name", "x"), "no --name"),
        (("{tmp}/missing", "--server"), "not an instance directory"),
        (("{tmp}/keys", "--allow", "{tmp}/missing"), "no such instance directory"),
    ],
)
def test_keygen_usage_errors(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("x")
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert run_in_process(keygen, "keygen", *argv) == exit_codes.USAGE
    assert message in one_line(capsys.readouterr().err)
    assert not (tmp_path / "keys").exists()


def test_keygen_keys_work_with_serve_and_ctl_over_tcp(tmp_path, capsys):
    """--server's pair is the one the instance serves with; --allow'ed client keys connect."""
    src = tmp_path / "src"
    src.mkdir()
    assert run_in_process(keygen, "keygen", src, "--server") == exit_codes.OK
    assert run_in_process(keygen, "keygen", tmp_path / "alice", "--allow", src) == exit_codes.OK
    assert run_in_process(keygen, "keygen", tmp_path / "eve") == exit_codes.OK  # not allowed
    text = capsys.readouterr().out
    assert f"--curve-server-key {server_key_file(src)}" in text  # the next steps, exactly
    assert os.listdir(allow_list(src)) == ["client.key"]
    server_public = zmq.auth.load_certificate(server_key_file(src))[0]

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Instance.open(src, control=endpoint, **OPTIONS):
        assert zmq.auth.load_certificate(server_key_file(src))[0] == server_public  # kept
        for client, code in (("alice", exit_codes.OK), ("eve", exit_codes.REFUSED)):
            done = ctl_run(
                endpoint,
                "ping",
                "--timeout",
                "5",
                "--curve-server-key",
                server_key_file(src),
                "--curve-client-key",
                tmp_path / client / "client.key_secret",
            )
            assert done.returncode == code, (client, done.stderr)
    assert done.stdout == "" and "run/curve/clients" in one_line(done.stderr)  # eve's


def test_a_missing_client_key_file_is_one_line_and_usage(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    assert run_in_process(keygen, "keygen", tmp_path / "src", "--server") == exit_codes.OK
    capsys.readouterr()
    missing = tmp_path / "nowhere.key_secret"
    code = run_in_process(
        ctl,
        "ctl",
        f"tcp://127.0.0.1:{free_port()}",
        "ping",
        "--curve-server-key",
        server_key_file(tmp_path / "src"),
        "--curve-client-key",
        missing,
    )
    assert code == exit_codes.USAGE
    line = one_line(capsys.readouterr().err)
    assert "JET_errFileNotFound" in line and str(missing) in line and "--curve-client-key" in line
