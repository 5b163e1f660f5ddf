"""How a job's executable names are found, the same way in every process."""

import os
import shutil


def locate(name):
    """Return the path the Worker runs for executable `name`, or None.

    A name with a slash is a path (relative to the working directory); a
    bare name is looked up on PATH, as a shell does.
    """
    if os.sep in name:
        return name
    return shutil.which(name)
