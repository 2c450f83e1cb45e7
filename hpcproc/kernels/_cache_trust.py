"""Whether a compiled-kernel cache directory may be trusted (no Numba import here).

Numba's cache files are pickles: loading one runs whatever code it names. So, as ssh does
with its keys (``StrictModes``), a cache directory is used only when nobody but the
current user (or root) could have put files in it:

* the directory and every directory above it (also through symbolic links) is owned by
  the user or root and is not writable by group or others (a sticky directory such as
  ``/tmp`` may be world-writable above the cache; a group that is the user's own private
  group, with no other members, counts as the user);
* the directory is writable by the user (Numba silently caches elsewhere otherwise);
* every file and sub-directory inside is owned by the user or root, is not a symbolic
  link, and is not writable by a group or others who can reach it.

Directories created here are made ``0700``. :func:`choose` applies this to the configured
directory, falls back to a private per-user directory in the temporary directory, and
finally to no on-disk cache; it returns a one-line reason whenever it did not use the
configured directory.
"""

from __future__ import annotations

import os
import stat
import tempfile

__all__ = ["problem", "make_private", "choose", "fallback_dir"]


def _private_group(gid: int) -> bool:
    """True when ``gid`` is a group of the current user alone (user private groups)."""
    try:
        import grp
        import pwd
        group, user = grp.getgrgid(gid), pwd.getpwuid(os.getuid())
    except (ImportError, KeyError):
        return False
    return gid == user.pw_gid and group.gr_name == user.pw_name and not (
        set(group.gr_mem) - {user.pw_name})


def _writable_by_others(st) -> bool:
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and not _private_group(st.st_gid)


def _chain(path: str) -> list[str]:
    """``path`` and its ancestors, as given and resolved, root first, without repeats."""
    out = []
    for p in (os.path.abspath(path), os.path.realpath(path)):
        parts = []
        while True:
            parts.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        out += [q for q in reversed(parts) if q not in out]
    return out


def _problem_above(path: str) -> str | None:
    uid = os.getuid()
    top = os.path.realpath(path)
    for p in _chain(path):
        st = os.stat(p)
        if st.st_uid not in (0, uid):
            return f"{p} is owned by uid {st.st_uid}, not by you"
        last = os.path.realpath(p) == top
        if _writable_by_others(st) and (last or not st.st_mode & stat.S_ISVTX):
            return f"{p} is writable by its group or others (chmod go-w {p})"
    return None


def _problem_inside(top: str) -> str | None:
    uid = os.getuid()
    st = os.stat(top)
    reach = {top: (bool(st.st_mode & stat.S_IXGRP), bool(st.st_mode & stat.S_IXOTH))}
    for root, dirs, files in os.walk(top):
        grp_in, oth_in = reach.get(root, (True, True))
        for name in dirs + files:
            p = os.path.join(root, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue  # removed meanwhile (another process cleaning up)
            if stat.S_ISLNK(st.st_mode):
                return f"{p} is a symbolic link"
            if st.st_uid not in (0, uid):
                return f"{p} is owned by uid {st.st_uid}, not by you"
            if (oth_in and st.st_mode & stat.S_IWOTH) or (
                    grp_in and st.st_mode & stat.S_IWGRP and not _private_group(st.st_gid)):
                return f"{p} is writable by its group or others"
            if stat.S_ISDIR(st.st_mode):
                reach[p] = (grp_in and bool(st.st_mode & stat.S_IXGRP),
                            oth_in and bool(st.st_mode & stat.S_IXOTH))
    return None


def problem(path: str) -> str | None:
    """Why ``path`` must not be used as a kernel cache (``None`` when it may)."""
    try:
        if not os.path.isdir(path):
            return f"{path} is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        return _problem_above(path) or _problem_inside(path)
    except OSError as exc:
        return f"cannot check {path}: {exc.strerror or exc}"


def make_private(path: str) -> None:
    """Create ``path`` and its missing parents with mode 0700 (existing ones untouched)."""
    path = os.path.abspath(path)
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass  # another rank of this node made it meanwhile


def fallback_dir() -> str:
    """The private per-user cache in the temporary directory (node-local usually)."""
    return os.path.join(tempfile.gettempdir(), f"hpcproc-{os.getuid()}", "numba")


def _usable(path: str) -> str | None:
    try:
        make_private(path)
    except OSError as exc:
        return f"{path} cannot be created: {exc.strerror or exc}"
    return problem(path)


def choose(configured: str, variable: str | None) -> tuple[str | None, str | None]:
    """``(directory or None for no disk cache, reason or None)`` for the cache.

    ``configured`` is the requested directory (named by ``variable`` when it came from
    the environment). The reason is set whenever ``configured`` is not used.
    """
    why = _usable(configured)
    if why is None:
        return configured, None
    what = f"{variable}={configured}" if variable else configured
    why = f"kernel cache {what} not used: {why}"
    private = fallback_dir()
    if os.path.realpath(private) != os.path.realpath(configured) and _usable(private) is None:
        return private, f"{why}; using the private cache {private}"
    return None, f"{why}; compiling without an on-disk cache"
