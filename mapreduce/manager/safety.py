"""Checks a job must pass before the Manager deletes and fills its output.

Starting a job removes its output directory, so the Manager does not trust
the client: a job whose output directory could hold anything precious, or
whose inputs and executables are missing, is rejected with a reason.
"""

import os

from mapreduce.executables import locate
from mapreduce.protocol import MAX_PARTITIONS


def _contains(parent, child):
    """Tell whether real path `child` is `parent` or lies inside it."""
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _executable_problem(role, path):
    """Return why `path` cannot serve as the job's executable, or None."""
    if locate(path) is None:
        return f"{role} executable {path!r} is not found on PATH"
    path = locate(path)
    if not os.path.isfile(path):
        return f"{role} executable {path!r} is not a file"
    if not os.access(path, os.X_OK):
        return f"{role} executable {path!r} is not executable"
    return None


def _name_problem(what, path):
    """Return why `path` cannot name a file on this system, or None."""
    if "\0" in path:
        return f"{what} {path!r} contains a NUL character"
    try:
        os.fsencode(path)
    except UnicodeError:
        return f"{what} {path!r} is not a valid file name here"
    return None


def job_problem(job, shared_dir):
    """Return why the Manager must not run `job`, or None if it may."""
    problem = next(filter(None, (
        _name_problem(what, path) for what, path in (
            ("input directory", job.input_directory),
            ("output directory", job.output_directory),
            ("mapper executable", job.mapper_executable),
            ("reducer executable", job.reducer_executable)))), None)
    if problem:
        return problem  # The checks below could not even ask about it.
    problems = []
    if job.num_mappers < 1:
        problems.append(f"num_mappers must be at least 1, not "
                        f"{job.num_mappers}")
    if not 1 <= job.num_reducers <= MAX_PARTITIONS:
        problems.append(f"num_reducers must be between 1 and "
                        f"{MAX_PARTITIONS}, not {job.num_reducers}")
    if not os.path.isdir(job.input_directory):
        problems.append(f"input directory {job.input_directory!r} is not a "
                        "directory")
    problems.append(_executable_problem("mapper", job.mapper_executable))
    problems.append(_executable_problem("reducer", job.reducer_executable))
    problems.append(output_problem(
        job.output_directory, job.input_directory,
        [("the mapper", locate(job.mapper_executable)
          or job.mapper_executable),
         ("the reducer", locate(job.reducer_executable)
          or job.reducer_executable)],
        shared_dir))
    return next((problem for problem in problems if problem), None)


def output_problem(output, input_directory, executables, shared_dir=None,
                   cwd_label="the Manager's working directory"):
    """Return why `output` must not be replaced by a job's output, or None.

    Refused: the root, the home directory, the working directory (named
    `cwd_label`) or an ancestor of it, the input directory or an ancestor
    of it, a directory that holds one of the `executables` (pairs of a
    label and a path), the shared directory (if given), an ancestor of it
    or anything inside it, and a path that exists but is not a plain
    directory (a file or a symbolic link).
    """
    return next(_output_problems(output, input_directory, executables,
                                 shared_dir, cwd_label), None)


def _output_problems(output, input_directory, executables, shared_dir,
                     cwd_label):
    """Yield every reason not to replace the output directory."""
    if not output:
        yield "the output directory is empty"
        return
    if os.path.lexists(output) and (os.path.islink(output)
                                    or not os.path.isdir(output)):
        yield f"output directory {output!r} exists and is not a directory"
    real = os.path.realpath(output)
    guarded = [
        ("the file-system root", os.sep),
        ("the home directory", os.path.expanduser("~")),
        (cwd_label, os.getcwd()),
        ("the input directory", input_directory),
        *executables,
    ]
    if shared_dir is not None:
        guarded.append(("the shared directory", shared_dir))
    for what, path in guarded:
        path = os.path.realpath(path)
        if real == path:
            yield f"output directory {output!r} is {what}"
        elif _contains(real, path):
            yield f"output directory {output!r} contains {what}"
    if shared_dir is not None and _contains(os.path.realpath(shared_dir),
                                            real):
        yield f"output directory {output!r} is inside the shared directory"
