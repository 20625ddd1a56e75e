"""Output directories, checked before a run or an evaluation builds anything.

Without the check an unusable `--checkpoint-dir` or `--out` (an existing file, a path under a
file, a read-only directory) surfaced as an `OSError` traceback only once the model was built
and compiled, or, for evaluation, after every episode had run.
"""

from __future__ import annotations

import os

from distillax.config import ConfigError


def check_output_dir(path: str, name: str) -> str:
    """Raise `ConfigError` ("`name` = 'path' is invalid: ...") unless `path` is a directory
    this process may write into, or one it may create (its nearest existing ancestor is a
    writable directory). Creates nothing, so a refused run leaves no directory behind.
    `name` is what the user set: a flag (`--out`) or a config field. Returns the absolute path.

    `os.access` answers for the real user and sees read-only mounts; for root, a directory
    without write permission bits is still writable, so it passes, as the write would.
    """

    def fail(why: str) -> None:
        raise ConfigError(f"{name} = {path!r} is invalid: {why}")

    if "\0" in path:  # os.makedirs would raise ValueError, not OSError
        fail("it contains a NUL character")
    full = os.path.abspath(path)
    existing = full
    while not os.path.lexists(existing):  # lexists: a dangling link is in the way, not absent
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        fail("it exists and is not a directory" if existing == full
             else f"{existing!r} in it is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail("the directory is not writable" if existing == full
             else f"it cannot be created: {existing!r} is not writable")
    longest = os.pathconf(existing, "PC_NAME_MAX")
    for part in os.path.relpath(full, existing).split(os.sep):
        if len(os.fsencode(part)) > longest:
            fail(f"the name {part[:40]!r}... is longer than {longest} bytes")
    return full
