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
    problems.append(output_problem(job, shared_dir))
    return next((problem for problem in problems if problem), None)


def output_problem(job, shared_dir):
    """Return why the job's output directory must not be replaced, or None.

    Refused: the root, the home directory, the Manager's working directory
    or an ancestor of it, the input directory or an ancestor of it, the
    shared directory, an ancestor of it or anything inside it, a directory
    that holds one of the executables, and a path that exists but is not a
    plain directory (a file or a symbolic link).
    """
    return next(_output_problems(job, shared_dir), None)


def _output_problems(job, shared_dir):
    """Yield every reason not to replace the job's output directory."""
    output = job.output_directory
    if not output:
        yield "the output directory is empty"
        return
    if os.path.lexists(output) and (os.path.islink(output)
                                    or not os.path.isdir(output)):
        yield f"output directory {output!r} exists and is not a directory"
    real = os.path.realpath(output)
    guarded = [
        ("the file-system root", os.path.realpath(os.sep)),
        ("the home directory", os.path.realpath(os.path.expanduser("~"))),
        ("the Manager's working directory", os.path.realpath(os.getcwd())),
        ("the input directory", os.path.realpath(job.input_directory)),
        ("the shared directory", os.path.realpath(shared_dir)),
        ("the mapper", os.path.realpath(locate(job.mapper_executable)
                                        or job.mapper_executable)),
        ("the reducer", os.path.realpath(locate(job.reducer_executable)
                                         or job.reducer_executable)),
    ]
    for what, path in guarded:
        if real == path:
            yield f"output directory {output!r} is {what}"
        elif _contains(real, path):
            yield f"output directory {output!r} contains {what}"
    if _contains(os.path.realpath(shared_dir), real):
        yield f"output directory {output!r} is inside the shared directory"
