"""The checkpoint directory: committed steps, the ``latest`` pointer, leftovers, retention.

Only rank 0 changes the directory. Deletion is two-phase and safe if interrupted: a step
is first renamed to a ``.trash-`` name (atomic; the step no longer exists), the directory
fsynced, then the files removed. Leftovers of interrupted saves (``.tmp-``) and deletions
(``.trash-``) are removed by :func:`cleanup` when a Checkpointer starts.
"""

from __future__ import annotations

import os
import shutil
import uuid

from . import _crash
from ._format import (
    LATEST,
    OLD_PREFIX,
    TMP_PREFIX,
    TRASH_PREFIX,
    fsync_dir,
    parse_step_dirname,
    step_dirname,
    write_file_atomic,
)

__all__ = ["committed_steps", "cleanup", "apply_retention", "trim_below", "discard_step",
           "write_latest", "read_latest"]


def committed_steps(directory: str) -> list[int]:
    """Step numbers of the committed step directories, oldest first (not yet verified)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    steps = [parse_step_dirname(n) for n in names]  # a symbolic link is never a step
    return sorted(s for s, n in zip(steps, names)
                  if s is not None and not os.path.islink(os.path.join(directory, n)))


def _put_back(directory: str, name: str) -> bool:
    """Rename ``.old-step-N-<token>`` back to ``step-N`` if no ``step-N`` exists (a save
    that replaced step N was interrupted before the new one was committed)."""
    step = parse_step_dirname(name[len(OLD_PREFIX):].rsplit("-", 1)[0])
    path = os.path.join(directory, name)
    if step is None or not os.path.isdir(path) or os.path.islink(path):
        return False
    final = os.path.join(directory, step_dirname(step))
    if os.path.lexists(final):
        return False
    os.rename(path, final)
    return True


def cleanup(directory: str) -> list[str]:
    """Remove leftovers of interrupted saves and deletions; return their names."""
    removed = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(OLD_PREFIX) and _put_back(directory, name):
            fsync_dir(directory)
            continue
        path = os.path.join(directory, name)
        if name.startswith((TMP_PREFIX, TRASH_PREFIX, OLD_PREFIX)) \
                or name.startswith(LATEST + ".tmp-"):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            removed.append(name)
    if removed:
        fsync_dir(directory)
    return removed


def discard_step(directory: str, step: int, rank: int = 0) -> None:
    """Delete a committed step: atomic rename to the trash, fsync, then remove the files."""
    trash = os.path.join(directory, f"{TRASH_PREFIX}{step_dirname(step)}-{uuid.uuid4().hex[:8]}")
    os.rename(os.path.join(directory, step_dirname(step)), trash)
    fsync_dir(directory)
    _crash.point("retention", rank)
    shutil.rmtree(trash, ignore_errors=True)


def apply_retention(directory: str, keep: int, rank: int = 0,
                    newest: int | None = None) -> list[int]:
    """Delete the oldest committed steps so that ``keep`` remain; return the deleted.

    With ``newest`` (the step just committed), steps numbered above it are deleted too:
    they belong to an abandoned future (a restore that fell back past corrupt steps), and
    must neither be restored later nor crowd the new step out of the retention window.
    """
    steps = committed_steps(directory)
    doomed = []
    if newest is not None:
        doomed = [s for s in steps if s > newest]
        steps = [s for s in steps if s <= newest]
    doomed += steps[:max(0, len(steps) - keep)]
    for step in doomed:
        discard_step(directory, step, rank)
    return doomed


def trim_below(directory: str, keep: int, restored: int, rank: int = 0) -> list[int]:
    """After ``restored`` was verified and restored: delete the steps older than the
    ``keep`` newest ones up to it (it is always kept). Newer steps, found invalid, are
    left alone (the next commit removes them). Returns the deleted steps; a failure to
    delete is ignored (housekeeping only)."""
    steps = [s for s in committed_steps(directory) if s <= restored]
    doomed = steps[:max(0, len(steps) - keep)]
    done = []
    for step in doomed:
        try:
            discard_step(directory, step, rank)
        except OSError:
            break
        done.append(step)
    return done


def write_latest(directory: str, step: int) -> None:
    """Atomically point ``latest`` at ``step``."""
    write_file_atomic(os.path.join(directory, LATEST), (step_dirname(step) + "\n").encode())


def read_latest(directory: str) -> int | None:
    """The step ``latest`` points at, or None (a hint only: restore never trusts it)."""
    try:
        with open(os.path.join(directory, LATEST)) as f:
            return parse_step_dirname(f.read().strip())
    except OSError:
        return None
