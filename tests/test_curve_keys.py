"""Damaged CURVE key files (issue 11, item 8): one error line, no traceback.

``jetstore ctl`` over tcp with a missing, garbage or plain-text key file (a usage
error: exit code 2), and ``jetstore serve`` (``Instance.open`` with a tcp control
socket) with a damaged ``run/curve``: each must name the ESE error and the file,
exit non-zero, and leave nothing running.
"""

from __future__ import annotations

import os
import shutil

import pytest
from test_control import OPTIONS, allow_list, free_port, make_client_keys, run_cli, server_key_file

from jetstore.engine import Instance, JetError
from jetstore.tools import exit_codes

GARBAGE = bytes(range(256)) * 4
TEXT = "These are the operator's notes, not a key.\npublic key: ask the admin\n"


def assert_one_error_line(done, name: str, path, code: int | None = None) -> None:
    assert done.returncode != 0, (done.returncode, done.stdout, done.stderr)
    if code is not None:
        assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert name in lines[0] and str(path) in lines[0], lines[0]


def ctl_with_keys(tmp_path, *, bad_file, flag: str):
    """``ctl ping`` over tcp with valid keys except ``bad_file`` under ``flag``."""
    public, secret = make_client_keys(tmp_path / "keys")
    keys = {"--curve-server-key": public, "--curve-client-key": secret, flag: bad_file}
    return run_cli(
        "ctl",
        f"tcp://127.0.0.1:{free_port()}",
        "ping",
        "--timeout",
        "2",
        *[item for pair in keys.items() for item in pair],
        timeout=30,
    )


FLAGS = pytest.mark.parametrize("flag", ["--curve-server-key", "--curve-client-key"])


@FLAGS
def test_ctl_with_a_missing_key_file(tmp_path, flag):
    missing = tmp_path / "nowhere.key"
    done = ctl_with_keys(tmp_path, bad_file=missing, flag=flag)
    assert_one_error_line(done, "JET_errFileNotFound (-1811)", missing, exit_codes.USAGE)


@FLAGS
def test_ctl_with_a_garbage_key_file(tmp_path, flag):
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(GARBAGE)
    done = ctl_with_keys(tmp_path, bad_file=garbage, flag=flag)
    assert_one_error_line(done, "JET_errInvalidParameter (-1003)", garbage, exit_codes.USAGE)


@FLAGS
def test_ctl_with_a_text_file_that_is_not_a_key(tmp_path, flag):
    notes = tmp_path / "notes.txt"
    notes.write_text(TEXT)
    done = ctl_with_keys(tmp_path, bad_file=notes, flag=flag)
    assert_one_error_line(done, "JET_errInvalidParameter (-1003)", notes, exit_codes.USAGE)


def instance_with_curve_keys(tmp_path) -> str:
    """An instance directory whose ``run/curve`` was made by a tcp open."""
    path = tmp_path / "src"
    make_client_keys(tmp_path / "operator", allow_list(path))
    Instance.open(path, control=f"tcp://127.0.0.1:{free_port()}", **OPTIONS).close()
    return str(path)


def serve_over_tcp(path):
    return run_cli("serve", path, "--control", f"tcp://127.0.0.1:{free_port()}", timeout=60)


def test_serve_with_a_garbage_server_secret_key(tmp_path):
    path = instance_with_curve_keys(tmp_path)
    secret_file = server_key_file(path) + "_secret"
    with open(secret_file, "wb") as damaged:
        damaged.write(GARBAGE)
    assert_one_error_line(serve_over_tcp(path), "JET_errInvalidParameter (-1003)", secret_file)


def test_serve_with_clients_being_a_file(tmp_path):
    path = instance_with_curve_keys(tmp_path)
    clients = allow_list(path)
    shutil.rmtree(clients)
    with open(clients, "w") as not_a_directory:
        not_a_directory.write(TEXT)
    assert_one_error_line(serve_over_tcp(path), "JET_errInvalidPath (-1023)", clients)


def test_open_with_damaged_curve_keys_fails_then_opens_once_repaired(tmp_path):
    """The API: a JetError naming the file, and no instance left behind by the failure."""
    path = instance_with_curve_keys(tmp_path)
    secret_file = server_key_file(path) + "_secret"
    with open(secret_file, "w") as damaged:
        damaged.write(TEXT)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(JetError) as failed:
        Instance.open(path, control=endpoint, **OPTIONS)
    assert failed.value.name == "JET_errInvalidParameter" and secret_file in failed.value.message
    os.remove(secret_file)  # as the message says: a new server key pair is generated
    Instance.open(path, control=endpoint, **OPTIONS).close()


def test_keygen_keys_load_and_pass_the_allow_list(tmp_path):
    """``jetstore keygen``'s files are what load_curve_key and the server's allow-list read."""
    from jetstore.actors.control import AllowList, load_curve_key
    from jetstore.tools.keygen import keygen

    instance = tmp_path / "src"
    instance.mkdir()
    server = keygen(str(instance), server=True)
    assert server["secret_file"] == server_key_file(instance) + "_secret"
    load_curve_key(server["secret_file"], "server key", secret=True)
    allowed = keygen(str(tmp_path / "alice"), allow=str(instance))
    other = keygen(str(tmp_path / "bob"))
    public, _ = load_curve_key(allowed["secret_file"], "client key", secret=True)
    assert public.decode() == allowed["public_key"]
    allow = AllowList(allow_list(instance))
    assert allow.callback("*", public) is True
    assert allow.callback("*", other["public_key"].encode()) is False


def test_a_damaged_file_in_the_allow_list_refuses_only_itself(tmp_path):
    """As sshd skips a bad authorized_keys line: the other listed clients still connect."""
    path = instance_with_curve_keys(tmp_path)
    (tmp_path / "src" / "run" / "curve" / "clients" / "broken.key").write_bytes(GARBAGE)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Instance.open(path, control=endpoint, **OPTIONS):
        keys = ["--curve-server-key", server_key_file(path)]
        keys += ["--curve-client-key", str(tmp_path / "operator" / "client.key_secret")]
        done = run_cli("ctl", endpoint, "ping", "--timeout", "20", *keys, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr)
