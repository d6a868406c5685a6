"""The backup catalog, pgBackRest's ``info`` (DESIGN.md sections 4 and 6): what a backup
directory, a log archive, or a directory of such directories holds, and the points a
restore from each backup chain can reach.

``path`` is looked at once, then one level down if it is neither:

- a backup directory: its MANIFEST (manifest_format.py) describes one chain, the full
  backup and its incrementals; an atomic destination lists ``new/`` then ``old/``;
- a log archive (archive_format.py): each stream of closed generations;
- otherwise each directory in ``path`` that is one of the two.  Anything else there - a
  file, an interrupted backup without a MANIFEST, an unrelated directory - is left out
  and named under ``ignored``; nothing recognizable at all is -520.

How deep it looks: by default the manifests and headers (the manifest's checksum, every
file present with the size listed, the database's meta and every log header of the
right signature) and, for commit times, the last generations of each run back to its
last commit; ``verify=True`` reads everything (``verify_backup`` for a backup, every
record of every archived generation).  Damage is reported in the result -
``verified`` false and ``error`` - never raised, so one bad chain hides no other.

A chain reaches from its full backup's roll (the restore of the full backup alone) to
the end of its last backup's log, and further through a stream of an archive found
beside it - in the same scan - with the same log signature, as long as that stream's
generations continue from the chain's last one without a gap (a damaged stream is not
counted on).  Times are record times (a commit's, or a table's creation or drop: redo_format.py).
"""

from __future__ import annotations

import os
import stat

from . import archive_format
from .backup import ATOMIC_NEW, ATOMIC_OLD, read_manifest
from .backup_restore import verify_backup
from .catalog_log import check_headers, contiguous_ranges, read_span
from .database_file import read_meta
from .errors import JetError
from .fileio import DEFAULT_ENV, fspath
from .log_format import RECORDS_START, format_lsn, make_lsn
from .log_reader import LogReader, generation_path, list_generations
from .manifest_format import MANIFEST
from .results import BackupCatalog, CatalogArchive, CatalogChain, CatalogStream
from .storage import DB_FILE, LOG_DIR
from .wall_time import iso_time

BACKUP, ARCHIVE = "backup", "archive"


def backup_info(path: str | bytes | os.PathLike, *, verify: bool = False) -> BackupCatalog:
    """Describe the backup chains and log archives at ``path`` (a backup directory, an
    archive, or a directory of them): ids, types, times, generation and LSN ranges,
    sizes, whether each verifies, and the earliest and latest point a restore reaches.

    ``verify=True`` reads every byte; otherwise manifests and headers only.  A path
    that is not a directory is -1023; one holding nothing recognizable is -520."""
    path = fspath(path)
    if not os.path.isdir(path):
        what = "not a directory" if os.path.exists(path) else "no such directory"
        raise JetError("JET_errInvalidPath", f"{path}: {what}")
    places, ignored = _places(path), []
    if not places:
        for name in sorted(os.listdir(path)):
            found = _places(os.path.join(path, name))
            places += found
            if not found:
                ignored.append(name)
    if not places:
        raise JetError(
            "JET_errNoBackup",
            f"{path} holds no backup (no MANIFEST in it, its new/ or old/) and no log archive "
            f"(no {archive_format.IDENTITY_FILE}), nor does any directory in it",
        )
    chains = [describe_chain(where, verify) for kind, where in places if kind == BACKUP]
    archives = [describe_archive(where, verify) for kind, where in places if kind == ARCHIVE]
    streams = [stream for archive in archives for stream in archive["streams"]]
    for chain in chains:
        _extend_through_archives(chain, streams)
    return {
        "path": path,
        "verify": verify,
        "verified": all(item["verified"] for item in [*chains, *archives]),
        "chains": chains,
        "archives": archives,
        "ignored": ignored,
    }


def _places(directory: str) -> list[tuple[str, str]]:
    """What ``directory`` is: an archive, a backup, an atomic destination (new/ first,
    then old/), or nothing the catalog knows."""
    if not os.path.isdir(directory):
        return []
    if archive_format.is_archive(directory):
        return [(ARCHIVE, directory)]
    if os.path.isfile(os.path.join(directory, MANIFEST)):
        return [(BACKUP, directory)]
    atomic = (os.path.join(directory, ATOMIC_NEW), os.path.join(directory, ATOMIC_OLD))
    return [(BACKUP, where) for where in atomic if os.path.isfile(os.path.join(where, MANIFEST))]


def _lsn(key: str, lsn: int | None) -> dict:
    return {key: lsn, f"{key}_text": None if lsn is None else format_lsn(lsn)}


def _time(key: str, time_ns: int | None) -> dict:
    """``key_ns``, then ``key`` as ISO-8601 to the microsecond: placed after it, this
    ``key`` is the one output.json_document keeps (it derives one to the millisecond
    from ``key_ns``; a restore target copied from that could fall before the commit)."""
    return {f"{key}_ns": time_ns, key: iso_time(time_ns)}


# -- backup chains ---------------------------------------------------------------------


def describe_chain(directory: str, verify: bool) -> CatalogChain:
    """One backup directory's chain; a MANIFEST that does not read leaves only the error."""
    try:
        manifest = read_manifest(directory)
        if manifest is None:
            raise JetError(
                "JET_errNoBackup",
                f"{os.path.join(directory, MANIFEST)}: gone while being read (an atomic "
                "backup swapping its directories?)",
            )
    except JetError as exc:
        return {**_chain_fields(directory, None), "error": exc.as_dict()}
    chain = _chain_fields(directory, manifest)
    low, start, entries = manifest["gen_low"], manifest["checkpoint_lsn"], manifest["chain"]
    reader = LogReader(
        DEFAULT_ENV,
        os.path.join(directory, LOG_DIR),
        signature=bytes.fromhex(manifest["log_signature"]),
    )
    try:
        _check_backup(directory, manifest, reader, verify)
        # Replay starts at the checkpoint; the full backup alone restores to its roll.
        full = read_span(reader, low, entries[0]["gen_high"], every_record=False, from_lsn=start)
        whole = read_span(reader, low, manifest["gen_high"], every_record=False, from_lsn=start)
    except JetError as exc:
        chain["error"] = exc.as_dict()
        return chain
    # The range as a restore measures it (recovery.Replay), so that whatever this says
    # is reachable a restore accepts as its target: from the end of the last record
    # before the roll, and the latest commit there (or, with none, the backup's time),
    # to the end of the log and its latest commit.
    earliest_ns = full.last_commit_ns if full.last_commit_ns is not None else entries[0]["time_ns"]
    chain.update(
        _lsn("earliest_lsn", start if full.end_lsn is None else full.end_lsn),
        **_lsn("latest_lsn", start if whole.end_lsn is None else whole.end_lsn),
        **_time("earliest_time", earliest_ns),
        **_time("latest_time", max(whole.last_commit_ns or earliest_ns, earliest_ns)),
        verified=True,
    )
    return chain


def _chain_fields(directory: str, manifest: dict | None) -> CatalogChain:
    """What the MANIFEST says of a chain, unchecked; all None if it could not be read."""
    known = manifest or {}
    entries = known.get("chain", [])
    last = entries[-1] if entries else {}
    return {
        "directory": directory,
        "backup_id": known.get("backup_id"),
        "db_signature": known.get("db_signature"),
        "log_signature": known.get("log_signature"),
        "backups": [
            {
                "id": entry["id"],
                "type": entry["type"],
                **_time("time", entry["time_ns"]),
                "gen_low": entry["gen_low"],
                "gen_high": entry["gen_high"],
                **_lsn("roll_lsn", entry["roll_lsn"]),
            }
            for entry in entries
        ],
        "gen_low": known.get("gen_low"),
        "gen_high": known.get("gen_high"),
        **_lsn("start_lsn", known.get("checkpoint_lsn")),
        **_lsn("end_lsn", last.get("roll_lsn")),
        "bytes": sum(entry["size"] for entry in known["files"].values()) if manifest else None,
        **_lsn("earliest_lsn", None),
        **_lsn("latest_lsn", None),
        **_time("earliest_time", None),
        **_time("latest_time", None),
        "latest_through": None,
        "verified": False,
        "error": None,
    }


def _check_backup(directory: str, manifest: dict, reader: LogReader, verify: bool) -> None:
    """Every byte (``verify_backup``), or the files' presence and sizes, the database's
    meta and the log headers; raises what is wrong."""
    if verify:
        verify_backup(directory)
        return
    for name, entry in sorted(manifest["files"].items()):
        file = os.path.join(directory, name)
        if not os.path.lexists(file):
            raise JetError(
                "JET_errMissingRestoreLogFiles"
                if name.startswith(LOG_DIR)
                else "JET_errInvalidBackup",
                f"{file}: listed in the manifest, missing",
            )
        size = _regular_file_size(file)  # a FIFO, a directory, a symlink loop: -1022
        if size != entry["size"]:
            raise JetError(
                "JET_errInvalidBackup", f"{file}: {size} bytes, the manifest says {entry['size']}"
            )
    db = DEFAULT_ENV.open_read(os.path.join(directory, DB_FILE))
    try:
        if read_meta(db).db_signature.hex() != manifest["db_signature"]:
            raise JetError(
                "JET_errBadDbSignature", f"{db.path}: not the database the manifest names"
            )
    finally:
        db.close()
    check_headers(reader, manifest["gen_low"], manifest["gen_high"])


def _extend_through_archives(chain: dict, streams: list[CatalogStream]) -> None:
    """Carry the chain's latest point through the furthest archived run of its stream that
    takes up where the backup's log ends."""
    if not chain["verified"]:
        return
    follows = chain["gen_high"] + 1
    for stream in streams:
        if stream["log_signature"] != chain["log_signature"] or not stream["verified"]:
            continue
        for run in stream["ranges"]:
            end, last_ns = run["end_lsn"], run["last_commit_time_ns"]
            if run["gen_low"] <= follows <= run["gen_high"] and end and end > chain["latest_lsn"]:
                chain.update(_lsn("latest_lsn", end), latest_through=stream["directory"])
                if last_ns is not None:
                    chain.update(_time("latest_time", max(last_ns, chain["latest_time_ns"] or 0)))


# -- archives ----------------------------------------------------------------------------


def describe_archive(archive: str, verify: bool) -> CatalogArchive:
    """An archive's identity and each of its streams."""
    described: dict = {"directory": archive, "db_signature": None, **_time("created_time", None)}
    try:
        identity = archive_format.read_identity(archive)
    except JetError as exc:
        error = exc.as_dict()
    else:
        error = None
        if identity is not None:
            described.update(db_signature=identity["db_signature"])
            described.update(_time("created_time", identity["created_ns"]))
    streams = [describe_stream(archive, name, verify) for name in archive_format.streams(archive)]
    described.update(
        streams=streams,
        verified=error is None and all(stream["verified"] for stream in streams),
        error=error,
    )
    return described


def _regular_file_size(path: str) -> int:
    """The size of the regular file at ``path``; -1022 naming it if it is anything else."""
    try:
        status = os.stat(path)
    except OSError as exc:
        raise JetError("JET_errDiskIO", f"{path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(status.st_mode):
        raise JetError("JET_errDiskIO", f"{path}: not a regular file")
    return status.st_size


def describe_stream(archive: str, signature: str, verify: bool) -> CatalogStream:
    """One stream's generations as contiguous runs, the gaps between them, and what the
    checks found; the runs' commit times as far as the checks got."""
    directory = archive_format.stream_dir(archive, bytes.fromhex(signature))
    generations = list_generations(DEFAULT_ENV, directory)
    runs = contiguous_ranges(generations)
    ranges = [
        {
            "gen_low": low,
            "gen_high": high,
            **_lsn("end_lsn", None),
            **_time("last_commit_time", None),
        }
        for low, high in runs
    ]
    stream: dict = {
        "directory": directory,
        "log_signature": signature,
        "gen_low": runs[0][0] if runs else None,
        "gen_high": runs[-1][1] if runs else None,
        "ranges": ranges,
        "gaps": [
            {"gen_low": a[1] + 1, "gen_high": b[0] - 1}
            for a, b in zip(runs, runs[1:], strict=False)
        ],
        **_lsn("start_lsn", make_lsn(runs[0][0], RECORDS_START) if runs else None),
        **_lsn("end_lsn", None),
        **_time("created_time", None),
        **_time("first_commit_time", None),
        **_time("last_commit_time", None),
        "bytes": 0,
        "verified": False,
        "error": None,
    }
    reader = LogReader(DEFAULT_ENV, directory, signature=bytes.fromhex(signature))
    try:
        # Sizes first, and only regular files read: a dangling link or a FIFO under a
        # generation's name is damage to report, not a hang or a traceback.
        for generation in generations:
            stream["bytes"] += _regular_file_size(generation_path(directory, generation))
        for run, (low, high) in zip(ranges, runs, strict=True):
            created = check_headers(reader, low, high)
            span = read_span(reader, low, high, every_record=verify)
            run.update(
                _lsn("end_lsn", span.end_lsn), **_time("last_commit_time", span.last_commit_ns)
            )
            if low == runs[0][0]:
                stream.update(
                    _time("created_time", created),
                    **_time("first_commit_time", span.first_commit_ns),
                )
            if span.end_lsn is not None:
                stream.update(_lsn("end_lsn", span.end_lsn))
            if span.last_commit_ns is not None:
                latest = max(span.last_commit_ns, stream["last_commit_time_ns"] or 0)
                stream.update(_time("last_commit_time", latest))
    except JetError as exc:
        stream["error"] = exc.as_dict()
    else:
        stream["verified"] = True
    return stream
