"""Replay the bad-input and fault cases of issue 12 and print, per case, good/bad and the message.

A case is good when it ends in the named error it should (exit 2 with a one-line message for bad
input, exit 1 for a failure while running, ValueError & co. from the library) or in a correct
result; bad when it exits 0 with a wrong result, loses data, or shows a traceback.

    .venv/bin/python benchmarks/bad_inputs.py          # about 5 minutes on two CPU cores
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROCKSALT = "225-a-[?]-0-0-0-b-O-1/2-1/2-1/2"
PEROVSKITE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
# a child that turns SIGINT into KeyboardInterrupt even when started from a background job
# (where the shell ignores SIGINT and the child would inherit that)
CLI = ["-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
       "from cfmc.cli import main; sys.exit(main())"]
RESULTS: list[tuple[bool, str, str]] = []


def record(name: str, good: bool, message: str) -> None:
    RESULTS.append((good, name, message))
    print(f"{'good' if good else 'BAD '}  {name:<44} {message}", flush=True)


def cli(argv: list[str]) -> tuple[int | str, str]:
    """`cfmc ARGV` in this process: (exit code, stderr's last line) or ('traceback', error)."""
    from cfmc.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
    except SystemExit as e:  # argparse's usage errors: exit 2 with a message on stderr
        lines = err.getvalue().strip().splitlines()
        return e.code, lines[-1] if lines else ""
    except BaseException as e:  # noqa: BLE001 - an escaping exception is what we count
        return "traceback", f"{type(e).__name__}: {e}"
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    text = lines[-1] if lines else out.getvalue().strip().splitlines()[-1:] or ""
    return code, text if isinstance(text, str) else " ".join(text)


def expect_cli(name: str, argv: list[str], code: int, pattern: str,
               check: Callable[[], bool] | None = None) -> None:
    got, text = cli(argv)
    ok = got == code and re.search(pattern, text) is not None and (check is None or check())
    record(name, ok, f"[exit {got}] {text}")


def expect_error(name: str, fn: Callable[[], object], pattern: str,
                 kinds: tuple = (ValueError, FileNotFoundError)) -> None:
    try:
        value = fn()
    except kinds as e:
        record(name, re.search(pattern, str(e)) is not None, f"{type(e).__name__}: {e}")
        return
    except Exception as e:  # noqa: BLE001
        record(name, False, f"unnamed {type(e).__name__}: {e}")
        return
    record(name, False, f"accepted: {value!r}"[:200])


def run_args(prior: Path, out: Path, template: str = ROCKSALT, extra: list[str] = (),
             sweeps: int = 4) -> list[str]:
    return ["infill", template, "--chains", "8", "--sweeps", str(sweeps), "--burn-in", "2",
            "--no-progress", "--seed", "3", "--prior", str(prior), "--elements", "Ca", "Sr",
            "Ti", "Zr", "O", "F", "--top", "4", "--checkpoint-every", "2", "--out", str(out),
            *extra]


def subprocess_cli(argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *CLI, *argv], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=ROOT, **kw)


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    end = time.time() + seconds
    while not path.exists() and proc.poll() is None and time.time() < end:
        time.sleep(0.1)


def leftovers(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == ".cfmc.lock"]


def template_cases(prior: Path, tmp: Path) -> None:
    for bad in ("nan", "inf", "1e400", "infinity"):
        expect_cli(f"infill coordinate {bad}", run_args(prior, tmp / f"c_{bad}",
                   f"225-a-[?]-0-0-0-e-O-{bad}-0-0"), 2, "coordinate x: .* not a finite")
    for opt, val, pat in (("--top", "-1", "top"), ("--temperature", "nan", "temperature"),
                          ("--anneal", "0", "anneal"), ("--seed", "-1", "seed"),
                          ("--chains", "0", "chains"), ("--sweeps", "1", "sweeps")):
        expect_cli(f"infill {opt} {val}", run_args(prior, tmp / f"o{opt}", extra=[opt, val]),
                   2, pat)
    expect_cli("infill --differ pair that cannot differ",
               run_args(prior, tmp / "differ", "225-a-[?]-0-0-0-b-O-1/2-1/2-1/2-c-O-1/4-1/4-1/4",
                        extra=["--differ", "1,2"]), 2, r"differ \(1, 2\)")
    args = run_args(prior, tmp / "neg")
    args.remove(ROCKSALT)
    expect_cli("infill -- -5-a-[?]", [*args, "--", "-5-a-[?]"], 2, "space group: '-5'")


def library_cases() -> None:
    from cfmc.crystal import Crystal
    from cfmc.template import Template

    expect_error("Template.parse(None)", lambda: Template.parse(None), "expected a string")
    t = Template.parse("225-a-[?]-0-0-0-e-O-1e-3-0-0")
    record("1e-3 as a coordinate", abs(t.sites[1].coords[0] - 1e-3) < 1e-12, str(t))
    expect_error("two atoms on one point (string)",
                 lambda: Crystal.from_string("225-e-Fe-0.2-0-0-e-Fe-0.2-0-0"), "one point")
    s = Crystal.from_string("225-a-Fe-0-0-0", [4, 4, 4, 90, 90, 90]).to_structure()
    s.append("Fe", [0, 0, 0], validate_proximity=False)
    expect_error("from_structure, two atoms on one point", lambda: Crystal.from_structure(s),
                 "one point")
    for name, lat in (("3 numbers", [4, 4, 4]), ("1e308", [1e308] * 3 + [90] * 3),
                      ("zeros", [0] * 6), ("flat angles", [4, 4, 4, 120, 120, 120])):
        expect_error(f"lattice of {name}",
                     lambda lat=lat: Crystal.from_string("225-a-Fe-0-0-0", lat), "lattice")
    good = Crystal.from_string("225-a-Fe-0-0-0", [4, 4, 4, 90, 90, 90]).to_structure()
    expect_error("from_structure symprec -1", lambda: Crystal.from_structure(good, -1),
                 "symprec")


def convert_cases(tmp: Path) -> None:
    mine = tmp / "mine.cif"
    mine.write_text("my own file\n")
    expect_cli("convert --out existing.cif", ["convert", "225-a-Fe-0-0-0", "--lattice", "4", "4",
               "4", "90", "90", "90", "--out", str(mine)], 2, "--force",
               lambda: mine.read_text() == "my own file\n")
    atoms = tmp / "atoms.cif"
    expect_cli("convert two atoms on one point", ["convert", "225-e-Fe-0.2-0-0-e-Fe-0.2-0-0",
               "--lattice", "4", "4", "4", "90", "90", "90", "--out", str(atoms)], 2,
               "one point", lambda: not atoms.exists())
    expect_cli("convert --lattice nan", ["convert", "225-a-Fe-0-0-0", "--lattice", "nan", "4",
               "4", "90", "90", "90"], 2, "lattice a = nan")
    expect_cli("convert missing CIF file", ["convert", str(tmp / "missing.cif")], 2,
               "no such CIF file")
    cif = tmp / "fe.cif"
    cli(["convert", "225-a-Fe-0-0-0", "--lattice", "4", "4", "4", "90", "90", "90", "--out",
         str(cif)])
    expect_cli("convert --symprec -1", ["convert", str(cif), "--symprec", "-1"], 2, "symprec")


def run_dir_cases(prior: Path, tmp: Path) -> None:
    first = tmp / "first"
    code, text = cli(run_args(prior, first))
    record("a good small infill run", code == 0, f"[exit {code}] {text}")
    copy = tmp / "forced"
    shutil.copytree(first, copy)
    before = sorted(p.name for p in copy.rglob("*"))
    expect_cli("--force with a bad template keeps the old run",
               run_args(prior, copy, "225-a-[?]-0-0-0-e-O-nan-0-0", ["--force"]), 2,
               "not a finite", lambda: sorted(p.name for p in copy.rglob("*")) == before)
    for opt, val in (("--chains", "9"), ("--seed", "4")):
        args = run_args(prior, first, extra=["--resume"])
        args[args.index(opt) + 1] = val
        expect_cli(f"--resume with other {opt}", args, 2, "cannot resume")
    expect_cli("--resume with another template",
               run_args(prior, first, "225-a-[?]-0-0-0-b-F-1/2-1/2-1/2", ["--resume"]), 2,
               "cannot resume")
    (tmp / "afile").write_text("x")
    expect_cli("--out under a file", run_args(prior, tmp / "afile" / "run"), 2, "is a file")
    if Path("/sys").is_dir():
        expect_cli("--out read-only", run_args(prior, Path("/sys/cfmc-bad-inputs")), 2,
                   "cannot write there")
    broken = tmp / "broken"
    shutil.copytree(first, broken)
    data = (broken / "checkpoint.npz").read_bytes()
    (broken / "checkpoint.npz").write_bytes(data[: len(data) // 3])
    expect_cli("truncated checkpoint.npz", run_args(prior, broken, extra=["--resume"]), 2,
               "damaged checkpoint")
    bad_prior = tmp / "bad_prior"
    shutil.copytree(prior, bad_prior)
    w = (bad_prior / "weights.eqx").read_bytes()
    (bad_prior / "weights.eqx").write_bytes(w[: len(w) // 2])
    expect_cli("truncated model checkpoint", run_args(bad_prior, tmp / "bp"), 2,
               "damaged prior checkpoint")


def data_cases(tmp: Path) -> None:
    gz = tmp / "trunc.csv.gz"
    payload = gzip.compress(("material_id,cif\n" + "x,data_y\n" * 20000).encode())
    gz.write_bytes(payload[: len(payload) // 2])
    expect_cli("truncated .csv.gz", ["data", "stats", str(gz)], 2, "truncated")
    expect_cli("train --lr nan", ["train", str(gz), "--lr", "nan", "--out", str(tmp / "t1")], 2,
               "lr = nan")
    expect_cli("train --batch-size 0", ["train", str(gz), "--batch-size", "0", "--out",
               str(tmp / "t2")], 2, "batch_size = 0")
    expect_cli("logp --batch-size 0", ["logp", "--data", str(gz), "--batch-size", "0", "--out",
               str(tmp / "l.csv")], 2, "batch_size = 0")


def train_divergence(tmp: Path) -> None:
    """A learning rate so large the loss leaves the floats: a clear error, no NaN weights."""
    from cfmc.data import shared_dir

    csv = shared_dir() / "data" / "mp20_biternary_val.csv.gz"
    if not csv.exists():
        record("train non-finite loss", False, f"skipped: no {csv}")
        return
    out = tmp / "diverge"
    code, text = cli(["train", str(csv), "--config", "tiny", "--limit", "120", "--epochs", "3",
                      "--batch-size", "20", "--lr", "1e30", "--warmup-steps", "0",
                      "--no-progress", "--out", str(out)])
    finite = True
    if (out / "best").exists():
        import equinox as eqx
        import jax
        import numpy as np
        from cfmc.priors import load_prior

        leaves = jax.tree_util.tree_leaves(eqx.filter(load_prior(out / "best"), eqx.is_array))
        finite = all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    record("train non-finite loss", code == 1 and "non-finite" in text and finite,
           f"[exit {code}] {text}")


def megnet_missing(tmp: Path) -> None:
    from cfmc.predictors.megnet import load_megnet

    t0 = time.time()
    expect_error("missing MEGNet model", lambda: load_megnet(tmp / "no_such_model"),
                 "not found|not a matgl")
    RESULTS[-1] = (RESULTS[-1][0] and time.time() - t0 < 15, *RESULTS[-1][1:])


def process_cases(prior: Path, tmp: Path) -> None:
    """Concurrent runs, SIGINT then resume, a full disk: each in its own interpreter."""
    busy = tmp / "busy"
    a = subprocess_cli(run_args(prior, busy, sweeps=60))
    wait_for(busy / ".cfmc.lock", a)
    expect_cli("two runs into one --out", run_args(prior, busy), 2, "in use by process")
    a.send_signal(signal.SIGINT)
    a.communicate(timeout=300)
    ref, out = tmp / "ref", tmp / "sigint"
    cli(run_args(prior, ref, PEROVSKITE, sweeps=24))
    p = subprocess_cli(run_args(prior, out, PEROVSKITE, sweeps=24))
    wait_for(out / "checkpoint.npz", p)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=300)
    code, _ = cli(run_args(prior, out, PEROVSKITE, ["--resume"], sweeps=24))
    same = (out / "samples.csv").read_bytes() == (ref / "samples.csv").read_bytes()
    cifs = sorted(x.name for x in (out / "cif").iterdir()) == sorted(
        x.name for x in (ref / "cif").iterdir())
    record("SIGINT then --resume", code == 0 and same and cifs and not leftovers(out),
           f"interrupted rc {p.returncode}; samples identical {same}; cif/ identical {cifs}; "
           f"leftovers {leftovers(out)}")
    full = tmp / "full"
    cmd = " ".join(f"'{x}'" for x in [sys.executable, "-m", "cfmc.cli",
                                      *run_args(prior, full, PEROVSKITE, sweeps=12)])
    r = subprocess.run(["bash", "-c", f"ulimit -f 48; exec {cmd}"], capture_output=True,
                       text=True, cwd=ROOT)
    last = r.stderr.strip().splitlines()[-1:] or [""]
    record("full disk (file-size limit)", r.returncode == 1 and "Traceback" not in r.stderr
           and (full / "checkpoint.npz").exists() and not leftovers(full),
           f"[exit {r.returncode}] {last[0]}")


def main() -> int:
    import jax

    from cfmc import priors

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        prior = tmp / "tiny"
        config = priors.get_config("tiny").replace(init_scale=0.5)
        priors.save_prior(priors.CrystalFormer(config, jax.random.PRNGKey(0)), prior)
        library_cases()
        convert_cases(tmp)
        template_cases(prior, tmp)
        data_cases(tmp)
        run_dir_cases(prior, tmp)
        megnet_missing(tmp)
        train_divergence(tmp)
        process_cases(prior, tmp)
    good = sum(ok for ok, _, _ in RESULTS)
    print(f"\n{good} of {len(RESULTS)} cases good (a named error or a correct result)")
    print(json.dumps({"good": good, "total": len(RESULTS)}))
    return 0 if good == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
