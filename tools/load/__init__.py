"""``jetstore load``: a seeded, reproducible load generator with online backups, which
reports throughput and latency overall, during backups and without them, against
jetstore and, with --compare sqlite, against SQLite.

    histogram       HDR-style latency histograms (bounded relative error, mergeable)
    workload        the seeded key, value-size and operation streams; populating keys
    shared          what the driver and the client processes share
    clients         the client processes and their runners for jetstore and SQLite
    backups         the backup scheduler and the two ways of taking a backup
    driver          starting, collecting from and stopping the clients
    summary         the figures of a run: timeline, windows, backups, ratios
    progress_lines  the periodic progress lines (-P N) and the backup's progress
    targets         the instance and the SQLite database the clients run against
    report          the human report
    plot            --plot
    options         the options, their checks, the run's configuration
    cli             the command: help, registration, run, exit code
"""

from .cli import add_parser, main, run
from .histogram import Histogram, exact_percentile
from .workload import ValueSize, Workload, Zipf

__all__ = [
    "Histogram",
    "ValueSize",
    "Workload",
    "Zipf",
    "add_parser",
    "exact_percentile",
    "main",
    "run",
]
