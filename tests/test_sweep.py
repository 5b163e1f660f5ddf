"""Tests for mapreduce.sweep: owned directories, sweeping, real processes."""

import logging
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading

import pytest

from mapreduce import sweep

PREFIX = "mapreduce-local-task00003-"
REPO = pathlib.Path(__file__).resolve().parent.parent
LOG = logging.getLogger("test_sweep")

# An owner process: makes an owned directory with files in it (a nested
# directory too), prints its path, starts the children it is asked to, and
# removes the directory when its stdin closes.
OWNER = """
import os, subprocess, sys
from mapreduce import sweep
owned = sweep.OwnedDirectory(sys.argv[1], sys.argv[2])
with open(os.path.join(owned.name, "maptask00003-part00000"), "w") as out:
    out.write("hello\\t1\\n")
os.mkdir(os.path.join(owned.name, "nested"))
open(os.path.join(owned.name, "nested", "file"), "w").close()
children = [subprocess.Popen(["sleep", "60"]) for _ in sys.argv[3:]]
print(owned.name, *(child.pid for child in children), flush=True)
sys.stdin.read()
owned.cleanup()
"""

# Makes and removes owned directories in a loop, checking that its files
# stay in them; exits 1 and says so if one went missing.
CHURN = """
import os, sys
from mapreduce import sweep
for _ in range(int(sys.argv[3])):
    with sweep.OwnedDirectory(sys.argv[1], sys.argv[2]) as path:
        name = os.path.join(path, "maptask00003-part00000")
        open(name, "w").close()
        if not os.path.exists(name):
            sys.exit(f"lost {path}")
"""


def start_python(script, *args, **options):
    """Start `python -c script args...` in the repository; return it."""
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO,
                            **options)


class Owner:
    """A child process that owns a directory (see OWNER)."""

    def __init__(self, parent, prefix=PREFIX, children=0):
        """Start the owner in `parent`, with `children` sleeping children."""
        self.process = start_python(
            OWNER, prefix, str(parent), *["child"] * children,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        words = self.process.stdout.readline().split()
        self.path = pathlib.Path(os.fsdecode(words[0]))
        self.children = [int(pid) for pid in words[1:]]

    def finish(self):
        """Let the owner remove its directory and exit; return its status."""
        self.process.stdin.close()
        return self.process.wait(timeout=30)

    def kill(self):
        """SIGKILL the owner (not its children) and wait for it to go."""
        self.process.kill()
        self.process.wait(timeout=30)
        self.process.stdin.close()
        self.process.stdout.close()

    def close(self):
        """Make sure the owner and its children are gone."""
        if self.process.poll() is None:
            self.kill()
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(name="owners")
def fixture_owners():
    """Return a function starting owners; every one is ended after the test."""
    started = []

    def start(*args, **kwargs):
        owner = Owner(*args, **kwargs)
        started.append(owner)
        return owner
    yield start
    for owner in started:
        owner.close()


@pytest.fixture(name="parent")
def fixture_parent(tmp_path):
    """Return a private directory to play the system's temp dir."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def abandoned(parent, prefix=PREFIX):
    """Return an owned directory in `parent` whose owner was SIGKILLed."""
    owner = Owner(parent, prefix)
    owner.kill()
    return owner.path


def test_owned_directory(parent):
    """Named like TemporaryDirectory's, private, marked, removed at exit."""
    with sweep.OwnedDirectory(PREFIX, str(parent)) as path:
        path = pathlib.Path(path)
        assert path.parent == parent and path.name.startswith(PREFIX)
        mode = path.stat().st_mode
        assert stat.S_IMODE(mode) == 0o700 | sweep.MARK
        (path / "nested").mkdir()
        (path / "nested" / "file").write_text("x")
    assert not path.exists()


def test_owned_directory_cleanup_twice_and_after_removal(parent):
    """Cleanup may be called again, and after the directory is gone."""
    owned = sweep.OwnedDirectory(PREFIX, str(parent))
    assert owned.owned and repr(owned) == f"OwnedDirectory({owned.name!r})"
    shutil.rmtree(owned.name)
    owned.cleanup()
    owned.cleanup()


def test_live_owner_in_another_process_is_kept(parent, owners, caplog):
    """A living owner's directory and files survive a sweep."""
    owner = owners(parent)
    caplog.set_level(logging.DEBUG)
    assert not sweep.sweep(str(parent), PREFIX, LOG)
    assert (owner.path / "nested" / "file").exists()
    assert "Kept" in caplog.text and "WARNING" not in caplog.text
    assert owner.finish() == 0
    assert not owner.path.exists()


def test_sigkilled_owner_is_swept(parent, caplog):
    """A SIGKILLed owner's directory is removed, said and returned."""
    path = abandoned(parent)
    assert (path / "nested" / "file").exists()
    caplog.set_level(logging.INFO)
    assert sweep.sweep(str(parent), PREFIX, LOG) == [str(path)]
    assert not path.exists()
    assert f"Removed {path}, left by a process that is gone" in caplog.text
    assert not sweep.sweep(str(parent), PREFIX, LOG)


def test_only_the_prefix_is_swept(parent):
    """Directories of another prefix are not touched."""
    other = abandoned(parent, "mapreduce-shared-")
    mine = abandoned(parent)
    assert sweep.sweep(str(parent), PREFIX, LOG) == [str(mine)]
    assert other.exists()
    assert sweep.sweep(str(parent), "mapreduce-shared-", LOG) == [str(other)]


def test_lock_is_not_inherited_by_children(parent, owners):
    """A task's orphaned child (a mapper still running) holds no lock."""
    owner = owners(parent, children=1)
    owner.kill()
    os.kill(owner.children[0], 0)
    assert sweep.sweep(str(parent), PREFIX, LOG) == [str(owner.path)]


def test_directory_of_a_thread_of_this_process_is_kept(parent):
    """A directory held by another thread of the sweeping process survives."""
    made, done = threading.Event(), threading.Event()
    paths = []

    def hold():
        with sweep.OwnedDirectory(PREFIX, str(parent)) as path:
            paths.append(path)
            made.set()
            done.wait(30)
    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert made.wait(30)
        assert not sweep.sweep(str(parent), PREFIX, LOG)
        assert os.path.isdir(paths[0])
        with sweep.OwnedDirectory(PREFIX, str(parent)) as own:
            assert not sweep.sweep(str(parent), PREFIX, LOG)
            assert os.path.isdir(own)
    finally:
        done.set()
        thread.join(30)
    assert not os.path.exists(paths[0])


def test_unmarked_directories_are_kept(parent):
    """A directory without the mark: being made, or a spec-only Worker's."""
    plain = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    assert not sweep.sweep(str(parent), PREFIX, LOG)
    assert os.path.isdir(plain)


def test_other_users_directories_are_kept(parent):
    """A marked, unlocked directory of another user is not touched."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    path = abandoned(parent)
    os.chown(path, 65534, 65534)
    assert not sweep.sweep(str(parent), PREFIX, LOG)
    assert path.exists()


def test_files_and_symlinks_named_like_directories_are_kept(parent, tmp_path):
    """A link to an abandoned directory outside is not followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = abandoned(outside)
    (parent / f"{PREFIX}link").symlink_to(target)
    (parent / f"{PREFIX}file").write_text("x")
    assert not sweep.sweep(str(parent), PREFIX, LOG)
    assert (target / "nested" / "file").exists()
    assert (parent / f"{PREFIX}link").is_symlink()
    assert (parent / f"{PREFIX}file").exists()


def test_links_inside_a_swept_directory_are_not_followed(parent, tmp_path):
    """Removing a directory removes the links in it, not what they point at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    path = abandoned(parent)
    (path / "link-to-dir").symlink_to(outside)
    (path / "nested" / "link-to-file").symlink_to(outside / "keep")
    assert sweep.sweep(str(parent), PREFIX, LOG) == [str(path)]
    assert (outside / "keep").read_text() == "x"


def test_entry_replaced_after_listing_is_not_removed(parent, tmp_path):
    """Between listing and locking, the name may become anything.

    Gone: nothing happens. Replaced by a link to an abandoned directory
    elsewhere: the link is not followed.
    """
    path = abandoned(parent)
    name = path.name
    shutil.rmtree(path)
    assert not sweep.remove_if_unowned(str(parent), name, LOG)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = abandoned(outside)
    (parent / name).symlink_to(target)
    assert not sweep.remove_if_unowned(str(parent), name, LOG)
    assert (target / "nested" / "file").exists()


def test_sweeping_while_owners_come_and_go(parent, caplog):
    """Directories made and removed during sweeps are never lost or warned.

    An owner process makes and removes owned directories as fast as it
    can, checking each keeps its file, while this process sweeps.
    """
    dead = abandoned(parent)
    removed = []
    caplog.set_level(logging.WARNING)
    with start_python(CHURN, PREFIX, str(parent), "300",
                      stderr=subprocess.PIPE) as churn:
        try:
            finished = False
            while not finished:
                finished = churn.poll() is not None
                removed += sweep.sweep(str(parent), PREFIX, LOG)
        finally:
            churn.kill()
            _, stderr = churn.communicate(timeout=30)
    assert churn.returncode == 0, stderr.decode()
    assert removed == [str(dead)]
    assert not caplog.text


def undeletable(path):
    """Make file `path` impossible to remove; return a function undoing it.

    Non-root: its directory loses its write permission. Root: the file
    becomes immutable (chattr +i), where the file system allows it.
    """
    if os.geteuid() != 0:
        path.parent.chmod(0o500)
        return lambda: path.parent.chmod(0o700)
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(path)], check=False,
            capture_output=True).returncode != 0:
        pytest.skip("as root, needs chattr +i to make a file undeletable")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_permission_errors_are_logged_not_raised(parent, caplog):
    """A directory that cannot be removed is said; the others are swept."""
    stuck = abandoned(parent, f"{PREFIX}a")
    other = abandoned(parent, f"{PREFIX}b")
    undo = undeletable(stuck / "nested" / "file")
    caplog.set_level(logging.WARNING)
    try:
        assert sweep.sweep(str(parent), PREFIX, LOG) == [str(other)]
        assert f"Could not remove {stuck}, left by a process that is gone: " \
            in caplog.text
        assert (stuck / "nested" / "file").exists()
    finally:
        undo()
    assert sweep.sweep(str(parent), PREFIX, LOG) == [str(stuck)]


def test_a_parent_that_cannot_be_read_is_logged(tmp_path, caplog):
    """A missing parent, or a file as parent: a warning, nothing removed."""
    caplog.set_level(logging.WARNING)
    assert not sweep.sweep(str(tmp_path / "missing"), PREFIX, LOG)
    (tmp_path / "file").write_text("x")
    assert not sweep.sweep(str(tmp_path / "file"), PREFIX, LOG)
    assert caplog.text.count("Cannot sweep") == 2


def write_mountinfo(tmp_path, lines):
    """Write a mount table in /proc/self/mountinfo's format; return it."""
    path = tmp_path / "mountinfo"
    path.write_text("".join(
        f"{index} 1 0:{index} / {point} rw,relatime shared:1 - {kind} "
        f"src rw\n" for index, (point, kind) in enumerate(lines)))
    return str(path)


def test_filesystem_type(tmp_path):
    """The longest mount point above the path, the last one mounted wins."""
    table = write_mountinfo(tmp_path, [
        ("/", "ext4"), ("/mnt", "tmpfs"), ("/mnt/shared\\040dir", "nfs4"),
        ("/mnt/sharedx", "xfs"), ("/mnt", "cifs")])
    assert sweep.filesystem_type("/mnt/shared dir/a", table) == "nfs4"
    assert sweep.filesystem_type("/mnt/shared dir", table) == "nfs4"
    assert sweep.filesystem_type("/mnt/shared", table) == "cifs"
    assert sweep.filesystem_type("/var", table) == "ext4"
    assert sweep.filesystem_type("/", str(tmp_path / "none")) is None
    assert sweep.filesystem_type("/proc/self") == "proc"


def test_network_file_systems_are_not_swept(parent, tmp_path, monkeypatch,
                                            caplog):
    """Locks there do not tell about other machines: nothing is removed."""
    path = abandoned(parent)
    table = write_mountinfo(tmp_path, [("/", "ext4"),
                                       (os.path.realpath(parent), "nfs4")])
    monkeypatch.setattr(sweep, "MOUNTINFO", table)
    caplog.set_level(logging.INFO)
    assert not sweep.sweep(str(parent), PREFIX, LOG)
    assert path.exists() and "network file system (nfs4)" in caplog.text
