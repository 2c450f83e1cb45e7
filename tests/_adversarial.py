"""Generic checks of the adversarial matrix (tests/test_adversarial_*.py).

One concern per helper: launch a job and time it, fingerprint a directory, find temp
leftovers, judge an error's stderr, compare a result with a numpy reference. The case
tables live in the test modules; these functions only check the contract of issues 13
and 14: non-zero exit or the numpy-equal answer, no hang, every pre-existing file
byte-identical, no temp file left, and for an error exactly one ``hpcproc: error:`` line,
exit 1 (2 for usage), no traceback, no MPI_Abort banner when every rank agreed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from support import BIN, MPIEXEC

#: names a temporary file of hpcproc (or of a checkpoint save) may have
TEMP_PATTERNS = ("*.hpcproc-tmp*", ".hpcproc-tmp*", "*.tmp", "*.tmp-*", ".tmp-*", ".tmp*",
                 ".trash-*")
#: seconds a failing job may take from its launch (startup + "ends <= 10 s after the error")
ERROR_DEADLINE = 25.0
ABORT_MARKS = ("MPI_Abort", "application called MPI_Abort", "BAD TERMINATION")


@dataclass
class Launch:
    """What a finished (or killed) job left behind."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    def describe(self) -> str:
        return (f"exit {self.returncode} after {self.seconds:.1f} s"
                f"{' (TIMED OUT)' if self.timed_out else ''}\n--- stdout\n{self.stdout[-1500:]}"
                f"\n--- stderr\n{self.stderr[-2500:]}")


def clean_env(extra: dict | None = None) -> dict:
    """The environment of a child job: no inherited PMI connection, ``extra`` on top."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "MPI_LOCAL", "HPCPROC_"))}
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def hpcproc(*args) -> list[str]:
    return [str(BIN / "hpcproc"), *map(str, args)]


def mpiexec(cmd, ranks: int) -> list[str]:
    return [MPIEXEC, "-n", str(ranks), *map(str, cmd)]


def mpmd(*parts) -> list[str]:
    """``mpiexec -n 1 A : -n 1 B``: ranks that run different command lines."""
    full = [MPIEXEC]
    for i, (ranks, cmd) in enumerate(parts):
        full += ([":"] if i else []) + ["-n", str(ranks), *map(str, cmd)]
    return full


def launch(full_cmd, *, timeout: float, env: dict | None = None, cwd=None) -> Launch:
    """Run ``full_cmd`` (already wrapped in mpiexec if wanted), timed, killed on timeout."""
    t0 = time.monotonic()
    proc = subprocess.Popen(list(map(str, full_cmd)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env(env), cwd=cwd,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Launch(proc.returncode, out, err, time.monotonic() - t0)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        return Launch(proc.returncode, out, err, time.monotonic() - t0, timed_out=True)


def kill_group(proc) -> None:
    """SIGKILL the process group of a job this test started (its own session)."""
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- files ------------------------------------------------------------------------------
def snapshot(root) -> dict[str, str]:
    """``relative path -> sha256`` of every regular file under ``root`` (symlinks: target)."""
    root = Path(root)
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "symlink->" + os.readlink(p)
                continue
            try:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError as exc:
                out[rel] = f"unreadable: {exc}"
    return out


def leftovers(root) -> list[str]:
    """Files or directories under ``root`` whose names look like temporary files."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            if any(fnmatch.fnmatch(name, pat) for pat in TEMP_PATTERNS):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def changed_files(before: dict, after: dict) -> list[str]:
    """Pre-existing files that were modified or removed."""
    return sorted(k for k, v in before.items() if after.get(k) != v)


# --- judging a job ----------------------------------------------------------------------
def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("hpcproc: error")]


def error_problems(res: Launch, *, codes=(1,), contains=(), agreed=True) -> list[str]:
    """Everything in which a failed job breaks the one-clear-message contract."""
    problems = []
    if res.timed_out:
        return [f"hung: killed after {res.seconds:.0f} s"]
    if res.returncode not in codes:
        problems.append(f"exit {res.returncode}, expected {' or '.join(map(str, codes))}")
    lines = error_lines(res.stderr)
    if len(lines) != 1:
        problems.append(f"{len(lines)} 'hpcproc: error' lines, expected exactly 1")
    elif not lines[0].startswith("hpcproc: error: "):
        problems.append(f"message not in the form 'hpcproc: error: ...': {lines[0]!r}")
    text = " ".join(lines).lower()
    for word in contains:
        if word.lower() not in text:
            problems.append(f"message does not name {word!r}")
    if "Traceback (most recent call last)" in res.stderr:
        problems.append("Python traceback in stderr")
    if agreed and any(m in res.stderr for m in ABORT_MARKS):
        problems.append("MPI_Abort banner after an error every rank detected")
    if res.seconds > ERROR_DEADLINE:
        problems.append(f"took {res.seconds:.1f} s (> {ERROR_DEADLINE} s) to fail")
    return problems


def first_json(text: str):
    """The JSON document a command printed on stdout (rank 0 prints it once)."""
    text = text.strip()
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError(f"no JSON in output: {text[:300]!r}")
    return json.loads(text[start:])


# --- comparing with numpy ----------------------------------------------------------------
def same(got, want, rtol: float = 1e-9, atol: float = 0.0, path: str = "") -> list[str]:
    """Differences between a result and its reference (NaN equals NaN, None equals NaN)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: got {type(got).__name__}, want dict"]
        out = []
        for k, v in want.items():
            if k not in got:
                out.append(f"{path}.{k}: missing")
            else:
                out += same(got[k], v, rtol, atol, f"{path}.{k}")
        return out
    if isinstance(want, (list, tuple)) and any(isinstance(w, (list, tuple, dict, np.ndarray))
                                               for w in want):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return [f"{path}: got {str(got)[:80]}, want {len(want)} items"]
        return [p for i, (g, w) in enumerate(zip(got, want))
                for p in same(g, w, rtol, atol, f"{path}[{i}]")]
    if isinstance(want, (list, tuple, np.ndarray)):
        try:
            g = np.asarray(_nan_for_none(got), dtype=np.float64)
        except (TypeError, ValueError):
            return [f"{path}: got {str(got)[:80]}, want an array"]
        w = np.asarray(want, dtype=np.float64)
        if g.shape != w.shape:
            return [f"{path}: shape {g.shape} != {w.shape}"]
        ok = np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True) | (g == w)
        if not ok.all():
            i = int(np.flatnonzero(~ok.ravel())[0])
            return [f"{path}[{i}]: got {g.ravel()[i]!r}, want {w.ravel()[i]!r}"]
        return []
    g = math.nan if got is None else got
    try:
        g, w = float(g), float(want)
    except (TypeError, ValueError):
        return [] if got == want else [f"{path}: got {got!r}, want {want!r}"]
    if (math.isnan(g) and math.isnan(w)) or g == w:
        return []
    if math.isinf(g) or math.isinf(w) or not math.isclose(g, w, rel_tol=rtol, abs_tol=atol):
        return [f"{path}: got {g!r}, want {w!r}"]
    return []


def _nan_for_none(x):
    if x is None:
        return math.nan
    if isinstance(x, list):
        return [_nan_for_none(v) for v in x]
    return x


def numpy_stats(a: np.ndarray, ddof: int = 0) -> dict:
    """numpy's float64 statistics of all elements (the CLI's and hp.stats' keys)."""
    a = np.asarray(a)
    f = a.astype(np.float64).ravel()
    if f.size == 0:
        nan = math.nan
        return {"count": 0, "mean": nan, "std": nan, "min": nan, "max": nan}
    # integer sums are numpy's own (exact in 64 bits, wrapping like numpy's: documented)
    with np.errstate(all="ignore"):
        total = float(np.sum(a)) if a.dtype.kind in "iu" else float(np.sum(f))
    with np.errstate(all="ignore"):
        return {"count": int(f.size), "sum": total, "mean": float(np.mean(f)),
                "std": float(np.std(f, ddof=ddof)), "min": float(np.min(f)),
                "max": float(np.max(f))}


def numpy_or_error(fn, *args, **kwargs):
    """``("value", fn(...))``, or ``("error", name)`` when numpy itself refuses."""
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "value", fn(*args, **kwargs)
    except (ValueError, IndexError, TypeError, OverflowError) as exc:
        return "error", type(exc).__name__


# --- batched API cases: one MPI job runs many cases --------------------------------------
DRIVER = Path(__file__).with_name("_adversarial_driver.py")


def run_batch(module: str, base, ranks: int, ids: list[str], *, startup: float = 60.0,
              per_case: float = 15.0, env: dict | None = None) -> dict:
    """Run the cases ``ids`` of ``module`` in one ``mpiexec -n ranks`` job and return
    ``{id: record}`` (see ``_adversarial_driver.py``).

    Each case must finish within ``per_case`` seconds of the previous one (``startup``
    for the first). A case that hangs or kills the job is recorded as such (with the
    stderr tail) and the job is relaunched from the next case, so one bad case cannot
    take the rest of the table with it.
    """
    import select
    import sys

    records: dict = {}
    todo = list(ids)
    while todo:
        cmd = mpiexec([sys.executable, DRIVER, module, base, *todo], ranks)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=clean_env(env), start_new_session=True)
        deadline = time.monotonic() + startup
        buf, err = b"", b""
        ended = False
        while todo and not ended:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([proc.stdout, proc.stderr], [], [], min(left, 1.0))
            for stream in ready:
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    ended = ended or stream is proc.stdout
                    continue
                if stream is proc.stderr:
                    err += chunk
                    continue
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.startswith(b"ADV "):
                        err += line + b"\n"  # the launcher's own messages go to stdout
                    else:
                        rec = json.loads(line[4:])
                        records[rec["id"]] = rec
                        if rec["id"] in todo:
                            todo.remove(rec["id"])
                        deadline = time.monotonic() + per_case
        if not todo:
            try:
                proc.wait(timeout=per_case)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            break
        alive = proc.poll() is None
        kill_group(proc)
        proc.wait()
        err += proc.stderr.read() or b""
        proc.stdout.close()
        proc.stderr.close()
        victim = todo.pop(0)
        how = "hung (no result within the case timeout)" if alive else \
            f"the job died (exit {proc.returncode})"
        records[victim] = {"id": victim, "crashed": how,
                           "stderr": err.decode(errors="replace")[-2000:]}
    return records
