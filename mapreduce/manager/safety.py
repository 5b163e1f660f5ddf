"""Checks a job must pass before the Manager deletes and fills its output.

Starting a job removes its output directory, so the Manager does not trust
the client: a job whose output directory could hold anything precious, or
whose inputs and executables are missing, is rejected with a reason.
"""

import os

MAX_REDUCERS = 10000


def _contains(parent, child):
    """Tell whether real path `child` is `parent` or lies inside it."""
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _executable_problem(role, path):
    """Return why `path` cannot serve as the job's executable, or None."""
    if not os.path.isfile(path):
        return f"{role} executable {path!r} is not a file"
    if not os.access(path, os.X_OK):
        return f"{role} executable {path!r} is not executable"
    return None


def job_problem(job, shared_dir):
    """Return why the Manager must not run `job`, or None if it may."""
    if job.num_mappers < 1:
        return f"num_mappers must be at least 1, not {job.num_mappers}"
    if not 1 <= job.num_reducers <= MAX_REDUCERS:
        return (f"num_reducers must be between 1 and {MAX_REDUCERS}, "
                f"not {job.num_reducers}")
    if not os.path.isdir(job.input_directory):
        return f"input directory {job.input_directory!r} is not a directory"
    for role, path in (("mapper", job.mapper_executable),
                       ("reducer", job.reducer_executable)):
        problem = _executable_problem(role, path)
        if problem:
            return problem
    return output_problem(job, shared_dir)


def output_problem(job, shared_dir):
    """Return why the job's output directory must not be replaced, or None.

    Refused: the root, the home directory, the Manager's working directory
    or an ancestor of it, the input directory or an ancestor of it, the
    shared directory, an ancestor of it or anything inside it, a directory
    that holds one of the executables, and a path that exists but is not a
    plain directory (a file or a symbolic link).
    """
    output = job.output_directory
    if not output:
        return "the output directory is empty"
    if os.path.lexists(output) and (os.path.islink(output)
                                    or not os.path.isdir(output)):
        return f"output directory {output!r} exists and is not a directory"
    real = os.path.realpath(output)
    guarded = [
        ("the file-system root", os.path.realpath(os.sep), False),
        ("the home directory", os.path.realpath(os.path.expanduser("~")),
         False),
        ("the Manager's working directory", os.path.realpath(os.getcwd()),
         True),
        ("the input directory", os.path.realpath(job.input_directory), True),
        ("the shared directory", os.path.realpath(shared_dir), True),
    ]
    for what, path, ancestors_too in guarded:
        if real == path:
            return f"output directory {output!r} is {what}"
        if ancestors_too and _contains(real, path):
            return f"output directory {output!r} contains {what}"
    if _contains(os.path.realpath(shared_dir), real):
        return f"output directory {output!r} is inside the shared directory"
    for role, path in (("mapper", job.mapper_executable),
                       ("reducer", job.reducer_executable)):
        if _contains(real, os.path.realpath(path)):
            return f"output directory {output!r} contains the {role}"
    return None
