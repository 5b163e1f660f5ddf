"""Temporary directories that outlive no one: owned ones, and sweeping.

A process that dies by SIGKILL (or a power cut) leaves its temporary
directories behind: a Worker its `mapreduce-local-task*` directories, a
Manager its `mapreduce-shared-*` directory. This module lets the next
process on the machine remove them, and never the directory of a process
that is still alive.

How a directory's owner is known to be alive: `OwnedDirectory` makes the
directory (the same way `tempfile.TemporaryDirectory` does, so its name
is the specification's) and holds an exclusive `flock` on the directory
itself, through a descriptor it keeps open for the directory's whole life.
The kernel drops the lock when that process dies, however it dies; and
no file is added inside the directory. Once locked, the directory is
marked with the sticky bit (meaningless on a private directory): the
mark says "my owner holds a lock on me". `sweep` removes a directory only
if it is marked, belongs to this user, and `sweep` can take its lock;
while it removes it, it holds that lock. So:

- a live owner's directory, in this or another process, is never
  removed: its lock is held;
- a directory being made is not marked yet, so it is left alone; a
  directory without the mark (made by a spec-only Worker, or by an older
  version) is never touched: nothing tells whether its owner lives;
- an owner removes its directory before it lets go of the lock;
- entries are opened relative to the parent, without following symbolic
  links, and checked to be the directory that was locked: a symbolic link
  is never followed, out of the parent or anywhere;
- on a network file system (NFS and the like), `flock` either fails on
  directories or is local to each machine, and says nothing about an
  owner on another machine: `sweep` leaves such a parent alone.
"""

import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile

# The mark of an owned directory: set only while its owner holds its lock.
MARK = stat.S_ISVTX

# Mount table of this process, to tell network file systems (Linux).
MOUNTINFO = "/proc/self/mountinfo"

# File systems shared by several machines: a lock does not tell there
# whether an owner on another machine is alive.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre",
    "9p", "afs", "gpfs", "beegfs", "ocfs2", "gfs2", "fuse.sshfs",
    "fuse.glusterfs", "fuse.s3fs", "fuse.rclone", "fuse.ceph"})

# A mount table writes a space in a path as \040, and so on.
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")

_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


class OwnedDirectory:
    """A temporary directory that its maker holds locked until removed.

    Use it as `tempfile.TemporaryDirectory` is used: `with
    OwnedDirectory(prefix, parent) as path:` makes the directory,
    `cleanup()` (or leaving the block) removes it. `owned` tells whether
    the lock was taken; where a file system refuses locks on directories
    the directory is made all the same, unmarked, and no sweep touches it.
    The lock's descriptor is not inherited by child processes.
    """

    def __init__(self, prefix, parent=None):
        """Make a directory named `prefix` + random in `parent`, and lock it.

        `parent` None means the system's temporary directory.
        """
        self.name = tempfile.mkdtemp(prefix=prefix, dir=parent)
        self._fd = os.open(self.name, _OPEN_DIRECTORY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.owned = False
        else:
            mode = stat.S_IMODE(os.fstat(self._fd).st_mode)
            os.fchmod(self._fd, mode | MARK)
            self.owned = True

    def __repr__(self):
        """Return e.g. `OwnedDirectory('/tmp/mapreduce-shared-x1y2')`."""
        return f"{type(self).__name__}({self.name!r})"

    def __enter__(self):
        """Return the directory's path."""
        return self.name

    def __exit__(self, *exc_info):
        """Remove the directory, then let go of its lock."""
        self.cleanup()

    def cleanup(self):
        """Remove the directory and everything in it, then unlock it.

        Calling it again does nothing. Errors in removing propagate, as
        from `tempfile.TemporaryDirectory`; the lock is let go anyway.
        """
        if self._fd is None:
            return
        try:
            shutil.rmtree(self.name)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None


def sweep(parent, prefix, log):
    """Remove the directories in `parent` named `prefix`... of dead owners.

    Returns the paths removed, in name order; logs each at info level.
    Every problem (a parent that cannot be read, an entry that cannot be
    removed) is logged as a warning, never raised; a directory in use,
    unmarked, another user's, or not a directory, is left alone quietly.
    """
    filesystem = filesystem_type(parent)
    if filesystem in NETWORK_FILESYSTEMS:
        log.info("Not sweeping %s: on a network file system (%s), locks "
                 "cannot tell whether a process elsewhere uses it",
                 parent, filesystem)
        return []
    try:
        with os.scandir(parent) as entries:
            names = sorted(entry.name for entry in entries
                           if entry.name.startswith(prefix))
    except OSError as exc:
        log.warning("Cannot sweep %s: %s", parent, exc.strerror or exc)
        return []
    return [os.path.join(parent, name) for name in names
            if remove_if_unowned(parent, name, log)]


def remove_if_unowned(parent, name, log):
    """Remove directory `name` in `parent` if its owner is gone.

    Returns whether it removed it. `sweep` calls this for each entry it
    lists; the entry may have changed since (removed, remade, replaced by
    a symbolic link), and that is checked after taking its lock.
    """
    path = os.path.join(parent, name)
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        log.warning("Cannot sweep %s: %s", parent, exc.strerror or exc)
        return False
    try:
        fd = os.open(name, _OPEN_DIRECTORY, dir_fd=parent_fd)
    except OSError as exc:
        os.close(parent_fd)
        if exc.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            log.warning("Cannot sweep %s: %s", path, exc.strerror or exc)
        return False
    try:
        if not _lock_if_abandoned(fd, parent_fd, name):
            log.debug("Kept %s: in use, or not an owned directory", path)
            return False
        _remove_contents(fd)
        os.rmdir(name, dir_fd=parent_fd)
    except OSError as exc:
        log.warning("Could not remove %s, left by a process that is gone: "
                    "%s", path, exc.strerror or exc)
        return False
    finally:
        os.close(fd)
        os.close(parent_fd)
    log.info("Removed %s, left by a process that is gone", path)
    return True


def _lock_if_abandoned(fd, parent_fd, name):
    """Lock directory `fd` if it is an abandoned owned directory.

    Returns True, holding the lock, if `fd` is a marked directory of this
    user that no process holds and that is still entry `name` of
    `parent_fd`; else False.
    """
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or not info.st_mode & MARK:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    try:
        now = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return os.path.samestat(info, now)


def _remove_contents(dir_fd):
    """Remove everything inside directory `dir_fd`, following no link."""
    with os.scandir(dir_fd) as scan:
        entries = [(entry.name, entry.is_dir(follow_symlinks=False))
                   for entry in scan]
    for name, is_dir in entries:
        if is_dir:
            sub_fd = os.open(name, _OPEN_DIRECTORY, dir_fd=dir_fd)
            try:
                _remove_contents(sub_fd)
            finally:
                os.close(sub_fd)
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)


def filesystem_type(path, mountinfo=None):
    """Return the type of the file system `path` is on, or None if unknown.

    Reads the mount table (`mountinfo`, default this process's, Linux
    only); elsewhere the answer is None.
    """
    target = os.fsencode(os.path.realpath(path))
    best, best_type = None, None
    try:
        with open(mountinfo or MOUNTINFO, "rb") as table:
            for line in table:
                fields = line.split()
                if b"-" not in fields[6:]:
                    continue
                mount_point = _OCTAL_ESCAPE.sub(_unescape, fields[4])
                if _is_under(target, mount_point) and (
                        best is None or len(mount_point) >= len(best)):
                    best = mount_point
                    best_type = fields[fields.index(b"-", 6) + 1]
    except (OSError, IndexError):
        return None
    return None if best_type is None else os.fsdecode(best_type)


def _unescape(match):
    """Return the byte an octal escape of the mount table stands for."""
    return bytes([int(match.group(1), 8) & 0xFF])


def _is_under(path, mount_point):
    """Tell whether absolute `path` is `mount_point` or inside it."""
    return (path == mount_point or mount_point == b"/"
            or path.startswith(mount_point.rstrip(b"/") + b"/"))
