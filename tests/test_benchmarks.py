"""Smoke tests: every benchmark runs end to end in a tiny configuration and reports
its figures (timing targets live in the benchmarks' output, not here)."""

from __future__ import annotations

import json

from jetstore.tools import bench_archive, bench_backup, bench_commit, bench_reads, bench_storage


def run(main, tmp_path, *args: str) -> dict:
    out = tmp_path / "report.json"
    assert main([*args, "--dir", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1 and report["config"]
    return report["results"]


def test_bench_storage(tmp_path):
    results = run(
        bench_storage.main, tmp_path, "--keys", "2000", "--gets", "2000", "--open-mb", "2"
    )
    assert results["bulk_load"]["ratio"] > 0 and results["point_gets"]["jetstore_per_s"] > 0
    assert results["open_after_clean_close"]["open_seconds"] > 0


def test_bench_commit(tmp_path):
    results = run(bench_commit.main, tmp_path, "--clients", "1", "2", "--seconds", "0.5")
    rows = results["commits"]
    assert [row["clients"] for row in rows] == [1, 2]
    assert all(row["jetstore"]["tx_per_s"] > 0 and row["sqlite"]["p99_ms"] > 0 for row in rows)


def test_bench_backup(tmp_path):
    results = run(bench_backup.main, tmp_path, "--size-mb", "4", "--clients", "2", "--seconds", "1")
    assert results["backup"]["ratio_to_cp"] > 0 and results["backup"]["bytes"] > 0
    assert results["backup"]["backup_worker_peak_rss_mb"] > 0
    assert results["foreground"]["no_backup"]["tx_per_s"] > 0
    assert results["restore"]["replay_seconds"] > 0
    for case in ("saturating_load", "cpu_neighbours"):
        assert results[case]["backups"] >= 1 and results[case]["backup_ratio_to_idle"] > 0
        assert results[case]["foreground_ratio"] > 0


def test_bench_reads(tmp_path):
    results = run(
        bench_reads.main,
        tmp_path,
        *("--keys", "2000", "--seconds", "0.3", "--processes", "2", "--hold-seconds", "0.5"),
    )
    for figure in ("gets_1", "gets_2", "scan"):
        assert results[f"{figure}_jetstore"] > 0 and results[f"{figure}_sqlite"] > 0
    assert results["commits_only"] > 0 and results["growth_held"]["commits"] > 0


def test_bench_archive(tmp_path):
    results = run(
        bench_archive.main,
        tmp_path,
        *("--clients", "2", "--seconds", "1", "--rounds", "1", "--archive-timeout", "0.3"),
    )
    commits = results["commits"]
    assert commits["with_tx_per_s"] > 0 and commits["without_tx_per_s"] > 0
    assert commits["max_lag_generations"] >= 0
    pitr = results["point_in_time_restore"]
    assert pitr["replay_commits_per_s"] > 0 and pitr["replay_mb_per_s"] > 0
    assert results["crash_recovery"]["reopen_seconds"] > 0
