"""Issue 24, scale beyond one machine: ``advlib scan --shards N --shard K`` (a deterministic partition by
path hash, each shard its own resumable report), ``--merge`` (checked), and ``--executor local``: the
shards as real submitit subprocess jobs, merged into the report one process writes."""

import hashlib
import shutil

import numpy as np
import pytest

from advlib import cli
from advlib.scan import files as scan_files, merge as scan_merge, report as scan_report
from test_cli import _rows, _scan

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Columns a shard may compute in other batches than one process: float32 softmax and scores.
FLOATS = ("top1_prob", "score")


def assert_same_report(got: list[dict], want: list[dict]) -> None:
    """The same rows in the same order: every column equal, scores and probabilities within float32 precision."""
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k not in FLOATS} == {k: v for k, v in w.items() if k not in FLOATS}
        for k in FLOATS:
            assert (g[k] == w[k] == "") or abs(float(g[k]) - float(w[k])) <= 1e-6, (g["path"], k, g[k], w[k])


@pytest.fixture(scope="module")
def one_process(corpus, tmp_path_factory):
    """The corpus folder (photos, FGSM files, a truncated JPEG, a text file named .jpg) scanned by one process."""
    out = tmp_path_factory.mktemp("one") / "one.csv"
    assert _scan(corpus["folder"], out=out, detector=corpus["detector"]) == 1  # two unreadable files
    return _rows(out)


def test_shards_partition_by_path_hash_and_merge_into_the_one_process_report(corpus, one_process, tmp_path, capsys):
    out = tmp_path / "r.csv"
    shard_rows = []
    for k in range(3):
        rc = _scan(corpus["folder"], "--shards", "3", "--shard", str(k), out=out, detector=corpus["detector"])
        rows = _rows(scan_merge.shard_report(out, k, 3))
        assert rc == (1 if any(r["error"] for r in rows) else 0)
        for r in rows:
            assert int(hashlib.sha256(r["path"].encode()).hexdigest()[:16], 16) % 3 == k
        shard_rows.append(rows)
    paths = [r["path"] for rows in shard_rows for r in rows]
    assert sorted(paths) == [r["path"] for r in one_process] and len(set(paths)) == len(paths)  # a partition
    assert all(len(rows) < len(one_process) for rows in shard_rows)
    capsys.readouterr()
    shards = [str(scan_merge.shard_report(out, k, 3)) for k in range(3)]
    assert cli.main(["scan", "--merge", *shards, "--out", str(out)]) == 1  # the unreadable files' error rows
    assert_same_report(_rows(out), one_process)
    assert "merged 3 report(s)" in capsys.readouterr().err
    # a shard rerun resumes: nothing classified again
    assert _scan(corpus["folder"], "--shards", "3", "--shard", "0", out=out, detector=corpus["detector"]) in (0, 1)
    assert f"{len(shard_rows[0])} already in the report (skipped)" in capsys.readouterr().out


def test_merge_names_missing_shards_files_and_disagreements(corpus, one_process, tmp_path, capsys):
    out = tmp_path / "r.csv"
    for k in range(3):
        _scan(corpus["folder"], "--shards", "3", "--shard", str(k), out=out, detector=corpus["detector"])
    shards = [str(scan_merge.shard_report(out, k, 3)) for k in range(3)]
    # Which files fall in which shard depends on the folder's path (a temporary folder here), so a
    # shard may be empty: the one left out and the one duplicated is the largest (>= 4 of 10 files).
    big = max(range(3), key=lambda k: len(_rows(shards[k])))
    rest = [shards[k] for k in range(3) if k != big]
    n_big = len(_rows(shards[big]))
    assert n_big > 0
    capsys.readouterr()
    assert cli.main(["scan", str(corpus["folder"]), "--merge", *rest, "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"problem: shard report(s) missing: {big} of 3" in text
    assert f"problem: {n_big} file(s) of the PATHs in no report" in text
    assert cli.main(["scan", "--merge", shards[big], *shards, "--out", str(out)]) == 1
    assert f"{n_big} duplicate row(s), identical, merged" in capsys.readouterr().err
    other = tmp_path / f"other.shard-{big}-of-3.csv"  # the same files at another threshold
    scan_report.write_report([dict(r, threshold="0.5") for r in _rows(shards[big])], other,
                             scan_report.report_columns(False))
    assert cli.main(["scan", "--merge", *rest, str(other), "--out", str(out)]) == 2
    assert "the reports disagree on the threshold" in capsys.readouterr().err
    assert cli.main(["scan", "--merge", shards[0], str(tmp_path / "missing.csv"), "--out", str(out)]) == 2
    assert cli.main(["scan", str(corpus["folder"]), "--shards", "3", "--shard", "3", "--out", str(out)]) == 2


def test_local_executor_runs_the_shards_as_jobs(corpus, tmp_path, capsys):
    folder = tmp_path / "photos"
    shutil.copytree(corpus["folder"] / "sub", folder)
    one = tmp_path / "one.csv"
    assert _scan(folder, out=one, detector=corpus["detector"]) == 0
    out = tmp_path / "jobs.csv"
    assert _scan(folder, "--shards", "2", "--executor", "local", out=out, detector=corpus["detector"]) == 0
    assert_same_report(_rows(out), _rows(one))
    err = capsys.readouterr().err
    assert "2 local job(s) submitted" in err and "shard 0 done (exit status 0)" in err
    assert sorted(p.name for p in tmp_path.glob("jobs.shard-*")) == ["jobs.shard-0-of-2.csv", "jobs.shard-1-of-2.csv"]
    assert any((tmp_path / "jobs.csv.jobs").glob("*_log.out"))  # submitit's job logs
    assert scan_files.shard_of("a/b.jpg", 2) == int(hashlib.sha256(b"a/b.jpg").hexdigest()[:16], 16) % 2
    assert np.isfinite([float(r["score"]) for r in _rows(out)]).all()
