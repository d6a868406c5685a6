"""Client processes whose acknowledged commits are a test's oracle.

Each client commits explicit one-key transactions until a stop file appears and
prints every acknowledged key with the LSN after its commit record, so a test
can decide, for any backup, which commits its roll must include.
"""

from __future__ import annotations

import subprocess
import sys

CLIENT = """
import os, sys
from jetstore.engine import connect
path, name, stop = sys.argv[1], sys.argv[2], sys.argv[3]
client = connect(path)
session = client.session()
i = 0
while not os.path.exists(stop):
    key = b"%s-%06d" % (name.encode(), i)
    session.begin()
    session.put("t", key, b"v" * 200)
    lsn = session.commit()
    print(key.decode(), lsn, flush=True)
    i += 1
client.close()
"""


class Clients:
    """Client processes committing until told to stop; their acknowledgements are the oracle."""

    def __init__(self, path, tmp_path, count: int = 3) -> None:
        self.stop_file = tmp_path / "stop-clients"
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-c", CLIENT, str(path), f"c{n}", str(self.stop_file)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(count)
        ]
        # every client has committed once before the test goes on
        self.first_lines = [process.stdout.readline() for process in self.processes]
        assert all(self.first_lines)

    def finish(self) -> dict[bytes, int]:
        self.stop_file.touch()
        acked = {}
        for process, first in zip(self.processes, self.first_lines, strict=True):
            out = process.stdout.read()  # not communicate(): it would skip what readline buffered
            assert process.wait(60) == 0
            for line in [first, *out.splitlines()]:
                key, lsn = line.split()
                acked[key.encode()] = int(lsn)
        return acked

    def kill(self) -> None:
        """For a test that failed half-way: leave no client running."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(30)
