"""Faults of the run directory with the tiny prior: a held lock refuses a second run, a stale one
is taken over, --out under a file or on a read-only file system fails before sampling, a full disk
(a file-size limit) is one line with exit 1 and no temporary files, SIGINT then --resume equals
the uninterrupted run with no stale files, --force with a bad template deletes nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cfmc.cli import main
from cfmc.rundir_lock import LOCK

pytest.importorskip("cfmc.priors")

# a child that turns SIGINT into KeyboardInterrupt even when started from a background job
# (where the shell ignores SIGINT and the child would inherit that)
CLI = ["-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
       "from cfmc.cli import main; sys.exit(main())"]
TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"


def _args(prior_dir, out, sweeps=6, extra=()):
    return ["infill", TEMPLATE, "--chains", "16", "--sweeps", str(sweeps), "--burn-in", "2",
            "--elements", "Ca", "Sr", "Ti", "Zr", "O", "F", "--top", "6", "--seed", "3",
            "--prior", str(prior_dir), "--checkpoint-every", "2", "--no-progress",
            "--out", str(out), *extra]


def _cli(args, **kw) -> subprocess.Popen:
    """`cfmc ARGS` in a fresh interpreter (never a fork of this one, where JAX runs)."""
    return subprocess.Popen([sys.executable, *CLI, *args], stderr=subprocess.PIPE,
                            text=True, **kw)


def _lock(out: Path, pid: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK)


@pytest.fixture(scope="module")
def reference(prior_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "reference"
    assert main(_args(prior_dir, out, sweeps=24)) == 0
    return out


def test_live_lock_refuses_a_second_run(prior_dir, tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _lock(tmp_path / "run", holder.pid)
        assert main(_args(prior_dir, tmp_path / "run")) == 2
        assert f"in use by process {holder.pid}" in capsys.readouterr().err
        assert not (tmp_path / "run" / "samples.csv").exists()
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_taken_over(prior_dir, tmp_path):
    _lock(tmp_path / "run", _dead_pid())
    assert main(_args(prior_dir, tmp_path / "run")) == 0
    assert (tmp_path / "run" / "samples.csv").exists()
    assert _leftovers(tmp_path / "run") == []  # the lock is released at the end


def test_out_under_a_file_or_read_only(prior_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert main(_args(prior_dir, tmp_path / "file" / "run")) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(_args(prior_dir, tmp_path / "file")) == 2
    assert (tmp_path / "file").read_text() == "mine"
    ro = Path("/sys/cfmc-test-out")  # sysfs refuses new folders even to root
    if Path("/sys").is_dir() and not ro.exists():
        assert main(_args(prior_dir, ro)) == 2
        assert "cannot write there" in capsys.readouterr().err


def test_force_with_a_bad_template_deletes_nothing(prior_dir, reference, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    args = _args(prior_dir, out, extra=["--force"])
    args[1] = "225-a-[?]-0-0-0-e-O-nan-0-0"
    assert main(args) == 2
    assert "not a finite" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_truncated_checkpoint_is_one_line(prior_dir, reference, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    data = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    assert main(_args(prior_dir, out, sweeps=30, extra=["--resume"])) == 2
    err = capsys.readouterr().err
    assert "damaged checkpoint" in err and "Traceback" not in err


def test_full_disk_is_one_line_and_leaves_no_temporaries(prior_dir, tmp_path):
    out = tmp_path / "full"
    # a 48 KiB file-size limit: the checkpoint fits, the trace plot does not (EFBIG, as a full
    # disk's ENOSPC); Python ignores SIGXFSZ, so the write raises instead of killing
    cmd = " ".join(f"'{a}'" for a in [sys.executable, "-m", "cfmc.cli",
                                       *_args(prior_dir, out, sweeps=12)])
    p = subprocess.run(["bash", "-c", f"ulimit -f 48; exec {cmd}"], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("cfmc infill")]
    assert len(lines) == 1 and "File too large" in lines[0] and "Traceback" not in p.stderr
    assert (out / "checkpoint.npz").exists()  # partial results kept
    assert _leftovers(out) == []


def test_sigint_then_resume_equals_uninterrupted(prior_dir, reference, tmp_path):
    out = tmp_path / "interrupted"
    p = _cli(_args(prior_dir, out, sweeps=24))
    deadline = time.time() + 300
    while not (out / "checkpoint.npz").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode in (0, 130), err  # 0 when the run ended before the signal landed
    assert main(_args(prior_dir, out, sweeps=24, extra=["--resume"])) == 0
    a = pd.read_csv(reference / "samples.csv")
    b = pd.read_csv(out / "samples.csv")
    pd.testing.assert_frame_equal(a, b)
    assert sorted(p.name for p in (out / "cif").iterdir()) == sorted(
        p.name for p in (reference / "cif").iterdir())
    import arviz as az

    ta, tb = az.from_netcdf(reference / "trace.nc"), az.from_netcdf(out / "trace.nc")
    for name in ta.posterior.data_vars:
        np.testing.assert_array_equal(ta.posterior[name].values, tb.posterior[name].values)
    assert _leftovers(out) == []
    assert os.listdir(out) and json.loads((out / "summary.json").read_text())["status"] == (
        "complete")
