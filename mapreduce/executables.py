"""How a job's executable names are found, the same way in every process."""

import os
import shutil


def locate(name):
    """Return the path the Worker runs for executable `name`, or None.

    A name with a slash is a path (relative to the working directory). A
    bare name is a file of that name in the working directory when there
    is one (as madoop and Hadoop Streaming users expect: `-mapper map.py`),
    returned as `./name`; otherwise it is looked up on PATH, as a shell
    does. None when neither has it.
    """
    if os.sep in name:
        return name
    if os.path.isfile(name):
        return os.path.join(os.curdir, name)
    return shutil.which(name)


def not_found_text(role, name, cwd_label="the current directory"):
    """Return the one-line reason why `locate(name)` found nothing.

    `cwd_label` names the working directory of the process that looked.
    """
    return (f"{role} {name!r} is neither a file in {cwd_label} nor found "
            "on PATH")
