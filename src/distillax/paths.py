"""Output directories, checked before a run or an evaluation builds anything, by creating them.

Without the check an unusable `--checkpoint-dir` or `--out` (an existing file, a path under a
file, a read-only directory, a path under `/proc`) surfaced as an `OSError` traceback only once
the model was built and compiled, or, for evaluation, after every episode had run. Asking about
permissions (`os.access`) is not enough: only the file system knows whether `mkdir` succeeds
there, so the check makes the directory. What it made is removed again on the way out of
`removing_unused` if it is still empty, so a refused or failed run leaves no empty directory
behind, while one that wrote into it keeps everything.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from distillax.config import ConfigError

# The directories `check_output_dir` made in this process, outermost first; `removing_unused`
# takes back those made inside it.
_made: list[str] = []


def check_output_dir(path: str, name: str) -> str:
    """Raise `ConfigError` ("`name` = 'path' is invalid: ...") unless `path` is a directory
    this process can write into, or one it can create: an existing directory is probed with a
    temporary subdirectory (made and removed at once), a missing one is created with its
    missing parents, and any `OSError` of that is the reason given. `name` is what the user
    set: a flag (`--out`) or a config field. Returns the absolute path.

    Call it inside `removing_unused`, which removes what it created if nothing was written.
    The cheap refusals (a file in the way, no write permission for `os.access`, a name too
    long) come first and create nothing; for root, a directory without write permission bits
    is still writable, so it passes, as the write would.
    """

    def fail(why: str) -> None:
        raise ConfigError(f"{name} = {path!r} is invalid: {why}")

    if "\0" in path:  # os.mkdir would raise ValueError, not OSError
        fail("it contains a NUL character")
    full = os.path.abspath(path)
    existing, missing = full, []
    while not os.path.lexists(existing):  # lexists: a dangling link is in the way, not absent
        missing.insert(0, existing)
        existing = os.path.dirname(existing)
    why = _refusal(full, existing)
    if why:
        fail(why)
    made: list[str] = []
    try:
        if not missing:
            os.rmdir(tempfile.mkdtemp(prefix=".distillax-check-", dir=full))
        for d in missing:
            try:
                os.mkdir(d)
                made.append(d)
            except FileExistsError:  # another process of the run made it meanwhile
                if not os.path.isdir(d):
                    raise
    except OSError as e:
        _remove_empty(made)
        fail(f"creating {e.filename!r} failed: {e.strerror}" if missing
             else f"writing into it failed: {e.strerror}")
    _made.extend(made)
    return full


def _refusal(full: str, existing: str) -> str | None:
    """Why `full` cannot be a writable directory, from what exists of it (`existing`, its
    longest existing prefix) without creating anything; None if it may be."""
    if not os.path.isdir(existing):
        return ("it exists and is not a directory" if existing == full
                else f"{existing!r} in it is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        return ("the directory is not writable" if existing == full
                else f"it cannot be created: {existing!r} is not writable")
    longest = os.pathconf(existing, "PC_NAME_MAX")
    for part in os.path.relpath(full, existing).split(os.sep):
        if len(os.fsencode(part)) > longest:
            return f"the name {part[:40]!r}... is longer than {longest} bytes"
    return None


def _remove_empty(dirs: list[str]) -> None:
    """`os.rmdir` each of `dirs` (outermost first) from the innermost out; a directory that is
    no longer empty, or gone, stays as it is."""
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            os.rmdir(d)


@contextlib.contextmanager
def removing_unused() -> Iterator[None]:
    """On leaving (by return or by any exception), remove the directories `check_output_dir`
    made inside this block that are still empty: a refused or interrupted run leaves none
    behind. Also a decorator."""
    start = len(_made)
    try:
        yield
    finally:
        _remove_empty(_made[start:])
        del _made[start:]
