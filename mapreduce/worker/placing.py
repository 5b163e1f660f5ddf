"""A task's files: its scratch directory, its inputs, finished files moved.

Finished files appear in their directory whole, never half written.
"""

import contextlib
import errno
import os
import shutil
import tempfile

from mapreduce import filenames
from mapreduce.worker.processes import TaskError


def local_dir(task_id):
    """Make the task's local temporary directory (a context manager)."""
    return tempfile.TemporaryDirectory(
        prefix=filenames.local_dir_prefix(task_id))


def open_input(path, stack):
    """Open an input file for reading bytes, closed by ExitStack `stack`.

    The file is unbuffered: its readers ask for blocks of their own size.
    Raises TaskError if it cannot be opened.
    """
    try:
        return stack.enter_context(open(path, "rb", buffering=0))
    except OSError as exc:
        raise TaskError(f"cannot read input {path}: {exc.strerror}") from exc


def move_into(path, directory):
    """Move file `path` into `directory`, replacing a file of that name.

    The file appears there whole: across file systems it is copied under
    a hidden name first and renamed in place.
    """
    name = os.path.basename(path)
    target = os.path.join(directory, name)
    try:
        os.replace(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise TaskError(f"cannot move {name} into {directory}: "
                            f"{exc.strerror}") from exc
        hidden = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(path, hidden)
            os.replace(hidden, target)
        except OSError as copy_exc:
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise TaskError(f"cannot move {name} into {directory}: "
                            f"{copy_exc.strerror}") from copy_exc
