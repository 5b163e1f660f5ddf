"""A task's files: its scratch directory, its inputs, finished files moved.

Finished files appear in their directory whole, never half written.
"""

import contextlib
import errno
import os
import shutil
import tempfile

from mapreduce import filenames, sweep
from mapreduce.worker.processes import TaskError


def local_dir(task_id):
    """Make the task's local temporary directory (a context manager).

    It is made in the system's temporary directory as
    `tempfile.TemporaryDirectory` would, and owned (mapreduce.sweep): if
    this process dies before removing it, the next Worker sweeps it.
    """
    return sweep.OwnedDirectory(filenames.local_dir_prefix(task_id))


def sweep_local_dirs(log):
    """Remove the task directories left by Workers that are gone.

    Returns the paths removed. Those of live Workers, on this machine
    too, are never touched (see mapreduce.sweep).
    """
    return sweep.sweep(tempfile.gettempdir(), filenames.LOCAL_DIR_PREFIX,
                       log)


def open_input(path, stack):
    """Open an input file for reading bytes, closed by ExitStack `stack`.

    The file is unbuffered: its readers ask for blocks of their own size.
    Raises TaskError if it cannot be opened.
    """
    try:
        return stack.enter_context(open(path, "rb", buffering=0))
    except OSError as exc:
        raise TaskError(f"cannot read input {path}: {exc.strerror}") from exc


GONE = "output directory is gone: the job ended"


class OutputDirectory:
    """A task's output directory, opened when the task starts.

    Files are placed through the open directory (a descriptor), never
    through its path again: if the job's directories are removed and
    made again meanwhile (the job ended, and a later job uses the same
    paths), a late file can land only in the removed directory, which
    takes none, and never in the later job's. Use it in a `with` block.
    """

    def __init__(self, path):
        """Open directory `path`; raises OSError if it cannot be opened."""
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)

    @classmethod
    def open(cls, path):
        """Open directory `path`; raises TaskError if it cannot be opened."""
        try:
            return cls(path)
        except OSError as exc:
            raise TaskError(f"cannot open output directory {path}: "
                            f"{exc.strerror}") from exc

    def __enter__(self):
        """Return the open directory."""
        return self

    def __exit__(self, *exc_info):
        """Close the directory."""
        self.close()

    def close(self):
        """Close the directory's descriptor (again: nothing)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self):
        """Show the directory's path, as in `OutputDirectory('/out')`."""
        return f"{type(self).__name__}({self.path!r})"

    def gone(self):
        """Tell whether the directory was removed, or replaced at its path."""
        try:
            opened = os.fstat(self.fd)
            now = os.stat(self.path)
        except OSError:
            return True
        return opened.st_nlink == 0 or not os.path.samestat(opened, now)

    def place(self, path):
        """Move file `path` in, replacing a file of that name.

        The file appears there whole: across file systems it is copied
        under a hidden name first and renamed in place. Raises TaskError,
        saying so, when the directory is gone.
        """
        name = os.path.basename(path)
        if self.gone():
            raise TaskError(f"cannot move {name} into {self.path}: {GONE}")
        try:
            os.replace(path, name, dst_dir_fd=self.fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise self._failure(name, exc) from exc
            self._copy_in(path, name)

    def _copy_in(self, path, name):
        """Copy file `path` in under a hidden name, then rename it `name`."""
        hidden = f".{name}.{os.getpid()}.tmp"
        try:
            with open(path, "rb") as source, open(
                    hidden, "wb", opener=self._opener) as copy:
                shutil.copyfileobj(source, copy)
            os.replace(hidden, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(hidden, dir_fd=self.fd)
            raise self._failure(name, exc) from exc

    def _opener(self, name, flags):
        """Open file `name` in the directory (for `open(..., opener=)`)."""
        return os.open(name, flags, 0o666, dir_fd=self.fd)

    def _failure(self, name, exc):
        """Return the TaskError for a file `name` that could not go in."""
        reason = GONE if self.gone() else exc.strerror
        return TaskError(f"cannot move {name} into {self.path}: {reason}")


def move_into(path, directory):
    """Move file `path` into `directory`, replacing a file of that name.

    `directory` is an OutputDirectory, or a path (opened for this move).
    The file appears there whole (see OutputDirectory.place).
    """
    if isinstance(directory, OutputDirectory):
        directory.place(path)
        return
    try:
        target = OutputDirectory(directory)
    except OSError as exc:
        raise TaskError(f"cannot move {os.path.basename(path)} into "
                        f"{directory}: {exc.strerror}") from exc
    with target:
        target.place(path)
