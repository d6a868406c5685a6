"""Corruption campaign: flip one bit somewhere in an instance or a backup, then check that the
engine and its inspectors report it - with the right ESE error naming the file and the page or
offset - or that the bit landed where nothing reads it; never that it was silently accepted.

    jetstore corrupt --trials N --seed S [--json-file FILE] [--target CLASS]...
                     [--trial K] [--actors] [--keep DIR] [--workdir DIR] [-v]
    python -m jetstore.tools.corrupt ...      (the same)

A campaign builds three pristine trees once (about a second), then copies the one a trial
needs per trial (30 ms a trial; ``--actors`` makes it about 250 ms):

- ``main``: an instance built with the in-process ``Storage``: two tables, small rows and
  overflow values, updates and deletes (so the checkpoint has a free list), two checkpoints,
  then commits that recovery must replay - an overflow value, updates across the whole tree
  (more than the cache holds, so dirty pages are evicted into pages the older checkpoint
  used), a value spanning three generations, small commits in the last generation - and a
  "crash" (files closed, no checkpoint);
- ``quiet``: a small instance that crashes before any page is written after its last
  checkpoint, so that its older meta slot still describes intact pages (the torn-meta-write
  case the two slots exist for), and whose last generation holds its checkpoint;
- ``backup``: a full then an incremental backup of a third instance, taken by the real actors
  (``Instance`` and ``inst.backup``): several generations and a two-entry chain.
The workload is fixed, so the layout is the same in every build.

Target classes (one is drawn per trial, then a byte in it and a bit):

    db_used_page   a page the newest checkpoint uses (tree, overflow or free-list page)
    db_free_page   a page on that checkpoint's free list, or past its high-water mark
    meta_slot      meta slot 0 or 1 of ``main`` or ``quiet`` (newest or older checkpoint)
    log_header     the 4096-byte header block of a generation (fields, crc, zero padding)
    log_closed     the records of a closed generation (a record header 15% of the time,
                   END_OF_GENERATION included), or the zeros after them
    log_last       the records of the last generation of ``main`` or ``quiet``, or the zeros
                   after them
    backup_db      the backup's jet.edb
    backup_log     a log generation of the backup (header, records, zeros)
    manifest       the backup's MANIFEST

Detectors:

    database    ``verify_database`` (esentutl /k), ``dump_header`` (/mh), then recovery:
                ``Storage.open`` + a scan of every table + ``integrity.check_checkpoint``, then
                one more commit, a crash and a second recovery (what the first one left must
                be usable)
    log         ``dump_log`` over every generation (/ml, replay context), the reader in backup
                context (what an online backup runs), then recovery as above
    backup      ``verify_backup`` and ``restore`` as an operator runs them; then, for jet.edb
                and the logs, both again after the MANIFEST is re-signed to match the damaged
                file (the "deep" pass): the file checksum is the first line of defence and the
                deep pass checks the one behind it - page and record verification - which is
                what catches damage that happened before the checksum was taken (between
                ``copy_generations``' verifying read and its copying read, in memory...)
    --actors    a second copy of a damaged instance is opened by ``Instance.open`` (recovery
                in the buffer manager process): it must fail with the same ESE number as in
                process or serve the same data - an actor never crashes on a damaged file

Outcomes:

    DETECTED   every detector that reads the damaged byte fails with an ESE number expected
               for the place (-1018 for a page, -501/-514 replaying a log, -612 reading it
               for a backup, -526 then -1018/-1206/-573 for a backup...) and a message naming
               the file and the place: ``page N``, the meta ``slot``, or ``offset N`` where N
               is the start of the damaged record or the header field checked; a detector that
               does not need the byte (recovery does not read generations older than its
               checkpoint's) must succeed with the pristine data
    HARMLESS   the byte is in space nothing reads: a free page of the checkpoint or a page
               past its high-water mark, the zero padding of a log header block (bytes 80..4095
               are outside the header checksum), the zeros after a closed generation's
               END_OF_GENERATION or after the last generation's records, a page of a backup's
               jet.edb that its checkpoint does not use.  The tool knows this from the pristine
               layout (``Pager.read_freelist`` on the newest meta, the record boundaries),
               says why ("free page 17 per the free list of checkpoint seq 4"), and requires
               every detector that runs to accept the files and return the pristine data.
               ``verify_database`` checks every page of the file, free ones included, so it
               lists a damaged free page: that is recorded in the reason, not held against
               the engine
    VIOLATION  anything else: no error where one was due, another ESE number, a message that
               does not name the place, data that differs from the pristine copy's (even when
               only the integrity check notices afterwards), an error on a harmless flip (a
               false alarm), or an exception that is not a JetError (a crash)

Subtle cases:

- Meta slot.  A damaged newest slot makes opening fall back to the older checkpoint and replay
  the log from its LSN.  That is DETECTED when ``dump_header`` names the slot, ``verify_database``
  lists the page, and recovery returns the pristine data: freed pages wait for two newer
  checkpoints, so the older slot's checkpoint is intact and the log replays from it;
  recovered data that differs is a VIOLATION.
- The last generation.  A torn write can only hurt records that were never synced; the
  writer puts a SYNCED record (the offset its last fdatasync covered) before the first append
  after each sync, so damage to a record that a later SYNCED record says was durable is
  corruption: -501 naming the damaged fragment's offset, counted DETECTED when recovery agrees.
  Damage to the final batch - no later SYNCED record - is indistinguishable from a torn write:
  recovery ends replay there.  Such a trial counts as DETECTED only if the reader shows it
  before recovery runs (``dump_log`` reports ``torn`` with ``end_lsn`` exactly at the damaged
  fragment) and recovery then returns exactly the committed state before that fragment; the
  acknowledged commits lost that way are counted per trial and in the summary, because
  recovery itself says nothing and zero-fills the rest of the generation.  Anything else is a
  VIOLATION.
- A backup's generations are all closed (the backup's roll closed the last one), so a damaged
  record in any of them - the last included - must be -573 in the deep pass.

Each trial draws from its own ``random.Random(f"{seed}/{trial}")``, so ``--trial K`` replays
trial K of a campaign alone.  Exit codes (tools/exit_codes.py): 0 no violation, 1 a violation
or the pristine fixture failed its own checks, 2 usage.

The modules, from the bottom up: ``catalogue`` (outcomes, target classes, expected errors),
``layout`` and ``model`` (where everything is in a pristine tree, what it holds), ``build``,
``readers`` and ``fixture`` (the pristine trees), ``flips`` (the damage), ``detectors`` (running
and judging them), ``db_judge``, ``log_judge``, ``backup_judge`` and ``actors`` (one place each),
``trials``, ``campaigns``, ``report`` and ``command`` (the command line).
"""

from __future__ import annotations

from jetstore.tools.corrupt.campaigns import run_campaign
from jetstore.tools.corrupt.catalogue import DETECTED, HARMLESS, OPTIONS, TARGETS, VIOLATION
from jetstore.tools.corrupt.command import add_parser, main, run_command
from jetstore.tools.corrupt.fixture import build_fixture
from jetstore.tools.corrupt.flips import flip_bit, make_flip
from jetstore.tools.corrupt.layout import scan_generation
from jetstore.tools.corrupt.readers import read_everything
from jetstore.tools.corrupt.trials import check_flip

# What the CLI (tools/cli.py) and the tests import from ``jetstore.tools.corrupt``.
__all__ = [
    "DETECTED",
    "HARMLESS",
    "OPTIONS",
    "TARGETS",
    "VIOLATION",
    "add_parser",
    "build_fixture",
    "check_flip",
    "flip_bit",
    "main",
    "make_flip",
    "read_everything",
    "run_campaign",
    "run_command",
    "scan_generation",
]
