"""Issue 24, items 1, 3, 4, 6 and 7: what ``advlib scan`` does with awkward inputs (symlink loops,
16-bit greyscale files, an unwritable report, files and folders it leaves out, tiny images) and how
it reports progress and an interruption. Real photos, the real classifier, the ``corpus`` detector."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advlib import cli, corpora, images, models
from test_cli import _rows, _scan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photos(n: int, start: int = 0) -> list[Path]:
    """``n`` of the ImageNet samples shipped in the foolbox wheel (JPEG files)."""
    return [p.path for p in corpora.demo_photos() if p.package == "foolbox" and "imagenet" in str(p.path)][start:start + n]


def _folder(root: Path, n: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for p in _photos(n):
        shutil.copy(p, root / p.name)
    return root


# ----------------------------------------------------------------------------- item 1: symlink loops

def test_a_symlink_loop_is_an_error_row_not_a_crash(corpus, tmp_path, capsys):
    folder = _folder(tmp_path / "photos")
    os.symlink("loopB.jpg", folder / "loopA.jpg")
    os.symlink("loopA.jpg", folder / "loopB.jpg")
    os.symlink(".", folder / "again")  # a folder linking to itself: not followed, and said so
    out = tmp_path / "r.csv"
    assert _scan(folder, out=out, detector=corpus["detector"]) == 1
    by_path = {Path(r["path"]).name: r for r in _rows(out)}
    assert sorted(by_path) == sorted(["loopA.jpg", "loopB.jpg", *(p.name for p in _photos(2))])
    for name in ("loopA.jpg", "loopB.jpg"):
        assert "symbolic links" in by_path[name]["error"] and by_path[name]["score"] == ""
    assert all(by_path[p.name]["error"] == "" and by_path[p.name]["score"] for p in _photos(2))
    text = capsys.readouterr().out
    assert "2 unreadable" in text and "1 symlinked folder (not followed)" in text


# ----------------------------------------------------------------------------- item 3: 16-bit greyscale

def test_16_bit_greyscale_files_are_read_at_their_brightness(corpus, tmp_path):
    grey = np.asarray(Image.open(_photos(1)[0]).convert("L"))
    folder = tmp_path / "grey"
    folder.mkdir()
    Image.fromarray(grey).save(folder / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "grey16.png")  # mode I;16
    with open(folder / "grey16.ppm", "wb") as f:  # a 16-bit PGM (netpbm; .ppm is the scanned suffix): mode I
        f.write(f"P5 {grey.shape[1]} {grey.shape[0]} 65535\n".encode() + (grey.astype(">u2") * 257).tobytes())
    assert Image.open(folder / "grey16.png").mode == "I;16" and Image.open(folder / "grey16.ppm").mode == "I"
    x8 = images.load_image(folder / "grey8.png")
    for name in ("grey16.png", "grey16.ppm"):
        assert (images.load_image(folder / name) == x8).all(), name  # (v * 257) >> 8 == v: the same pixels
    out = tmp_path / "r.csv"
    assert _scan(folder, out=out, detector=corpus["detector"]) == 0
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert rows["grey16.png"]["score"] == rows["grey16.ppm"]["score"] == rows["grey8.png"]["score"]
    assert rows["grey16.png"]["top1"] == rows["grey8.png"]["top1"]
    Image.fromarray(grey.astype(np.float32) / 255).save(folder / "float.tif")  # mode F: range unknown
    with pytest.raises(images.ImageReadError, match="float.tif.*32-bit float"):
        images.load_image(folder / "float.tif")


# ----------------------------------------------------------------------------- item 4: unwritable outputs

def test_unwritable_outputs_exit_2_before_the_classifier_loads(corpus, tmp_path, capsys, monkeypatch):
    def no_classifier(*args, **kwargs):
        raise AssertionError("the classifier was loaded before the bad argument was reported")

    monkeypatch.setattr(models, "load_classifier", no_classifier)
    folder = _folder(tmp_path / "photos", 1)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    det = str(corpus["detector"])
    for args, culprit in [(["--out", str(blocker / "r.csv")], "--out"),
                          (["--out", str(tmp_path)], "--out"),  # a folder
                          (["--out", str(tmp_path / "r.csv"), "--correct", str(blocker / "fixed")], "--correct"),
                          (["--out", str(tmp_path / "r.csv"), "--plot", str(blocker / "h.png")], "--plot")]:
        assert cli.main(["scan", str(folder), "--detector", det, "--device", "cpu", "--quiet", *args]) == 2, args
        err = capsys.readouterr().err
        assert f"advlib scan: error: {culprit}" in err and "Traceback" not in err, err
    assert not (tmp_path / "r.csv").exists()


# ----------------------------------------------------------------------------- item 6: nothing left out silently

def test_files_left_out_are_counted_and_tiny_images_warned(corpus, tmp_path, capsys):
    folder = _folder(tmp_path / "photos")
    photo = Image.open(_photos(1, 2)[0])
    photo.save(folder / "animation.gif")
    photo.resize((8, 8), Image.BILINEAR).save(folder / "tiny.png")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / ".hidden.jpg").write_bytes(_photos(1)[0].read_bytes())
    (folder / ".cache").mkdir()
    out = tmp_path / "r.csv"
    assert _scan(folder, out=out, detector=corpus["detector"]) == 0
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert sorted(rows) == sorted(["tiny.png", *(p.name for p in _photos(2))])
    assert "upscaled from 8x8" in rows["tiny.png"]["warning"] and rows["tiny.png"]["score"]
    assert all(rows[p.name]["warning"] == "" for p in _photos(2))
    text = capsys.readouterr().out
    assert "left out of the folders: 2 without an image suffix (.gif 1, .txt 1), 2 hidden" in text
    assert "1 with a warning" in text


def test_a_folder_without_images_exits_2(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "load_classifier", lambda *a, **k: pytest.fail("classifier loaded"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _scan(empty, out=tmp_path / "r.csv", detector=corpus["detector"]) == 2
    assert f"no image files in {empty}" in capsys.readouterr().err
    (empty / "a.gif").write_bytes(b"GIF89a")
    assert _scan(empty, out=tmp_path / "r.csv", detector=corpus["detector"]) == 2
    assert "1 without an image suffix (.gif 1)" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


def test_an_unreadable_folder_is_an_error_row(corpus, tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path / "photos")
    locked = folder / "locked"
    locked.mkdir()
    shutil.copy(_photos(1, 3)[0], locked / "inside.jpg")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads any folder: give the scan the error a user gets
            real = os.scandir

            def scandir(path="."):
                if os.fspath(path) == str(locked):
                    raise PermissionError(13, "Permission denied", str(locked))
                return real(path)

            monkeypatch.setattr(os, "scandir", scandir)
        out = tmp_path / "r.csv"
        assert _scan(folder, out=out, detector=corpus["detector"]) == 1
    finally:
        locked.chmod(0o755)
    rows = {r["path"]: r for r in _rows(out)}
    assert f"{locked}: cannot list folder" in rows[str(locked)]["error"]
    assert len(rows) == 3 and "1 unreadable" in capsys.readouterr().out


# ----------------------------------------------------------------------------- item 7: progress, interruption

def test_progress_moves_every_batch(corpus, tmp_path, capsys):
    folder = _folder(tmp_path / "photos", 6)
    assert cli.main(["scan", str(folder), "--detector", str(corpus["detector"]), "--out", str(tmp_path / "r.csv"),
                     "--device", "cpu", "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "2/6" in err and "4/6" in err and "6/6" in err


def test_an_interrupted_scan_says_what_the_report_holds(corpus, tmp_path):
    n = 24  # the progress bar may skip counts on a fast machine: stop at the first count of 2 or more
    folder = _folder(tmp_path / "photos", n)
    out = tmp_path / "r.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "advlib", "scan", str(folder), "--detector", str(corpus["detector"]), "--out",
           str(out), "--device", "cpu", "--batch-size", "1", "--threads", "1"]
    # A shell that starts a job in the background (`make test &`, nohup) makes it ignore SIGINT, and
    # its children inherit that: the scan process gets SIGINT's default back, as in a terminal.
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.time() + 300

    def started() -> bool:  # the bar's count, out of the files found (the folder may hold fewer than n)
        return any(2 <= int(k) < int(t) for k, t in re.findall(r" (\d+)/(\d+) ", "".join(err)))

    while not started() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 130, "".join(err)
    reader.join(10)
    text = "".join(err)
    line = next(s for s in text.splitlines() if s.startswith("interrupted:"))
    done = int(line.split(" holds ")[1].split()[0])
    total = int(re.findall(r" \d+/(\d+) ", text)[0])
    assert 2 <= done < total and len(_rows(out)) == done, text
    assert "rerun the same command to resume" in line
