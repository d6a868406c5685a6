"""The API as a user meets it (issue 14, item 5): errors caught by class, argument types
refused as TypeErrors, sessions as context managers, docstrings, typed results, one
``status=`` keyword for progress, no internal parameters, ``__version__``.

Against real actor processes, as tests/test_api.py is; each instance lives in tmp_path.
"""

from __future__ import annotations

import importlib.resources
import inspect
import pathlib
import pickle
import pydoc
import re

import pytest

import jetstore.engine
from jetstore.engine import (
    Client,
    CorruptionError,
    Instance,
    InstanceUnavailableError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    JetError,
    NotFoundError,
    Progress,
    Session,
    WriteConflictError,
    connect,
    restore,
    verify_backup,
)
from jetstore.engine.errors import FAMILIES
from jetstore.engine.page_format import PAGE_HEADER_SIZE
from jetstore.engine.storage import DB_FILE

PYPROJECT = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"


@pytest.fixture
def inst(tmp_path):
    instance = Instance.open(tmp_path / "db")
    instance.session().create_table("t")
    yield instance
    instance.close()


# -- errors caught by class ----------------------------------------------------------------


def test_a_write_conflict_is_caught_as_write_conflict_error(inst):
    first, second = inst.session(), inst.session()
    first.begin()
    second.begin()
    first.put("t", b"k", b"first")
    second.put("t", b"k", b"second")
    first.commit()
    with pytest.raises(WriteConflictError) as caught:
        second.commit()
    assert isinstance(caught.value, JetError)
    assert (caught.value.err, caught.value.name) == (-1102, "JET_errWriteConflict")
    assert inst.session().get("t", b"k") == b"first"


def test_a_damaged_page_is_caught_as_corruption_error(tmp_path):
    path, page_size = tmp_path / "db", 8192
    with Instance.open(path, page_size=page_size) as inst:
        session = inst.session()
        session.create_table("t")
        with session.transaction() as tx:
            for i in range(200):
                tx.put("t", b"damaged-%04d" % i, b"v" * 100)
    database = path / DB_FILE
    data = bytearray(database.read_bytes())
    leaves = [
        start
        for start in range(0, len(data), page_size)
        if b"damaged-" in data[start : start + page_size]
    ]
    assert leaves, "the rows are on no page of the closed instance's database file"
    for start in leaves:
        data[start + PAGE_HEADER_SIZE + 10] ^= 0x01  # in the body, which the checksum covers
    database.write_bytes(bytes(data))
    with Instance.open(path, create=False) as inst:
        with pytest.raises(CorruptionError) as caught:
            inst.session().get("t", b"damaged-0000")
    assert caught.value.err == -1018 and DB_FILE in caught.value.message


def test_a_closed_instance_is_caught_as_instance_unavailable_error(tmp_path):
    inst = Instance.open(tmp_path / "db")
    session = inst.session()
    session.create_table("t")
    inst.close()
    with pytest.raises(InstanceUnavailableError) as caught:
        session.put("t", b"k", b"v")
    assert caught.value.err == -1029 and str(tmp_path / "db") in caught.value.message
    with pytest.raises(InstanceUnavailableError):
        inst.session()


def test_a_missing_table_is_caught_as_not_found_error(inst):
    with pytest.raises(NotFoundError) as caught:
        inst.session().get("no such table", b"k")
    assert caught.value.err == -1305


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.put("t", "str key", b"v"),
        lambda s: s.put("t", b"k", "str value"),
        lambda s: s.get("t", "str key"),
        lambda s: s.delete("t", 5),
        lambda s: list(s.scan("t", start="a")),
        lambda s: s.put(b"t", b"k", b"v"),
        lambda s: s.create_table(5),
    ],
    ids=["put-key", "put-value", "get-key", "delete-key", "scan-start", "put-table", "create"],
)
def test_a_wrong_argument_type_is_a_type_error_and_a_jet_error(inst, call):
    with inst.session() as session:
        with pytest.raises(TypeError) as caught:
            call(session)
    assert isinstance(caught.value, InvalidArgumentTypeError)
    assert isinstance(caught.value, JetError) and isinstance(caught.value, ValueError)
    assert (caught.value.err, caught.value.name) == (-1003, "JET_errInvalidParameter")
    assert "must be" in caught.value.message


def test_a_wrong_argument_value_is_a_value_error_not_a_type_error(inst):
    with inst.session() as session:
        with pytest.raises(InvalidArgumentError) as caught:
            session.put("t", b"k" * 1001, b"v")
    assert isinstance(caught.value, ValueError) and not isinstance(caught.value, TypeError)
    assert caught.value.err == -346


def test_a_wrong_open_option_type_is_a_type_error(tmp_path):
    with pytest.raises(TypeError) as caught:
        Instance.open(tmp_path / "db", page_size="8192")
    assert caught.value.err == -1003 and "page_size" in caught.value.message


@pytest.mark.parametrize("path", [5, 1.5, ["db"]], ids=["int", "float", "list"])
def test_a_path_that_is_no_path_is_a_type_error_not_a_missing_directory(inst, tmp_path, path):
    for call in (lambda: Instance.open(path), lambda: inst.backup(path)):
        with pytest.raises(TypeError) as caught:
            call()
        assert isinstance(caught.value, InvalidArgumentTypeError)
        assert not isinstance(caught.value, NotFoundError)
        assert caught.value.err == -1023 and repr(path) in caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # nothing created


def test_a_lazy_flag_that_is_no_bool_is_refused_and_the_transaction_stays_open(inst):
    with inst.session() as session:
        session.begin()
        session.put("t", b"k", b"v")
        with pytest.raises(InvalidArgumentTypeError) as caught:
            session.commit(lazy="yes")
        assert caught.value.name == "JET_errInvalidGrbit" and "lazy" in caught.value.message
        assert session.get("t", b"k") == b"v"  # still its own uncommitted write
        session.commit()
    with inst.session() as other:
        assert other.get("t", b"k") == b"v"


@pytest.mark.parametrize(
    "family", [*FAMILIES, InvalidArgumentTypeError], ids=lambda family: family.__name__
)
def test_pickling_keeps_the_family_class(family):
    if family is InvalidArgumentTypeError:  # in no table: raised by name
        error = InvalidArgumentTypeError("JET_errInvalidParameter", "key must be bytes, not str")
    else:
        error = JetError(FAMILIES[family][0], "at some place")
    assert type(error) is family
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is family
    assert (copy.err, copy.name, copy.message) == (error.err, error.name, error.message)


def test_the_families_are_exported():
    for family in [*FAMILIES, InvalidArgumentTypeError, JetError]:
        assert getattr(jetstore.engine, family.__name__) is family
        assert family.__name__ in jetstore.engine.__all__


# -- sessions as context managers --------------------------------------------------------


@pytest.mark.parametrize("logging", [True, False], ids=["logged", "unlogged"])
def test_a_session_context_rolls_back_its_open_transaction(tmp_path, logging):
    with Instance.open(tmp_path / "db", logging=logging) as inst:
        with inst.session() as session:
            session.create_table("t")
            session.begin()
            session.put("t", b"k", b"uncommitted")
            session.get("t", b"k")
            held = inst.status()["buffer_manager"]
            held = held["open_snapshots"] if logging else held["open_transactions"]
            assert held == 1
        after = inst.status()["buffer_manager"]
        assert (after["open_snapshots"] if logging else after["open_transactions"]) == 0
        assert inst.session().get("t", b"k") is None
        with pytest.raises(JetError) as caught:
            session.get("t", b"k")
        assert caught.value.err == -1104  # JET_errInvalidSesid: the session is closed


def test_a_session_context_closes_on_an_exception_too(inst):
    with pytest.raises(RuntimeError):
        with inst.session() as session:
            session.begin()
            session.put("t", b"k", b"v")
            raise RuntimeError("the block failed")
    assert inst.session().get("t", b"k") is None
    session.close()  # a second close does nothing


def test_instance_and_client_are_context_managers(tmp_path):
    with Instance.open(tmp_path / "db") as inst:
        with connect(tmp_path / "db") as client:
            with client.session() as session:
                session.create_table("t")
        assert client.closed and not inst.closed
    assert inst.closed


# -- docstrings, signatures, typed results ---------------------------------------------------


def public_members() -> dict[str, object]:
    members: dict[str, object] = {}
    for owner in (Instance, Client, Session):
        for name, member in inspect.getmembers(owner):
            if not name.startswith("_"):
                members[f"{owner.__name__}.{name}"] = member
    for public in (Instance, Client, Session, Progress, connect, restore, verify_backup):
        members[public.__name__] = public
    return members


PUBLIC_MEMBERS = public_members()


@pytest.mark.parametrize("name", sorted(PUBLIC_MEMBERS))
def test_every_public_method_has_a_docstring(name):
    member = PUBLIC_MEMBERS[name]
    doc = member.fget.__doc__ if isinstance(member, property) else member.__doc__
    assert doc and len(doc.strip()) > 20, f"{name} has no docstring"


def test_help_shows_the_docstring_of_put():
    shown = pydoc.render_doc(Session.put, renderer=pydoc.plaintext)
    assert "Store ``value`` under ``key``" in shown
    assert "-- writes --" not in shown  # the section comment help() fell back on


def test_no_internal_parameter_is_public():
    for function in (restore, verify_backup, Instance.open, connect, Instance.backup):
        for parameter in inspect.signature(function).parameters.values():
            assert parameter.name != "env" and parameter.name != "report", function
            if parameter.name.startswith("_"):
                assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, function


def test_status_is_the_progress_keyword_of_backup_restore_and_verify_backup(inst, tmp_path):
    session = inst.session()
    session.put("t", b"k", b"v")
    seen: dict[str, list[Progress]] = {"backup": [], "verify": [], "restore": []}
    (tmp_path / "bk").mkdir()
    result = inst.backup(tmp_path / "bk", status=seen["backup"].append)
    checked = verify_backup(tmp_path / "bk", status=seen["verify"].append)
    restored = restore(tmp_path / "bk", tmp_path / "out", status=seen["restore"].append)
    for events in seen.values():
        assert events and all(isinstance(event, Progress) for event in events)
        assert events[-1].snt == "complete"
    assert checked["backup_id"] == result["backup_id"]
    assert restored["dest"] == str(tmp_path / "out")
    with pytest.raises(TypeError):
        verify_backup(tmp_path / "bk", report=print)  # the old keyword is gone


def test_backup_and_status_results_have_their_typed_keys(inst, tmp_path):
    from jetstore.engine.results import BackupResult, InstanceStatus

    (tmp_path / "bk").mkdir()
    result = inst.backup(tmp_path / "bk")
    assert set(result) == set(BackupResult.__annotations__) - {"generation"}
    truncation = inst.backup(None)
    assert set(truncation) == {"truncated", "generation", "seconds"}
    status = inst.status()
    assert (
        set(InstanceStatus.__required_keys__) <= set(status) <= set(InstanceStatus.__annotations__)
    )


def test_version_matches_pyproject():
    project = PYPROJECT.read_text().split("[project]", 1)[1]
    declared = re.search(r'^version = "([^"]+)"', project, re.MULTILINE).group(1)
    assert jetstore.engine.__version__ == declared


def test_the_engine_package_is_typed():
    assert importlib.resources.files("jetstore.engine").joinpath("py.typed").is_file()
