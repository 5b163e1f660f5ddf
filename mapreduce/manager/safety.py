"""Checks a job must pass before the Manager deletes and fills its output.

Starting a job removes its output directory, so the Manager does not trust
the client: a job whose output directory could hold anything precious, or
whose inputs and executables are missing, is rejected with a reason.
"""

import os

from mapreduce.executables import locate, not_found_text
from mapreduce.protocol import MAX_PARTITIONS


def _contains(parent, child):
    """Tell whether real path `child` is `parent` or lies inside it."""
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _executable_problem(role, path):
    """Return why `path` cannot serve as the job's executable, or None."""
    if locate(path) is None:
        return not_found_text(f"{role} executable", path,
                              "the Manager's working directory")
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


def _executables(job):
    """Return (role, name) of every program the job runs."""
    streaming = job.streaming
    roles = [("mapper", job.mapper_executable)]
    if not job.map_only:
        roles.append(("reducer", job.reducer_executable))
    roles.extend((role, name) for role, name in (
        ("combiner", streaming.combiner),
        ("partitioner", streaming.partitioner)) if name)
    return roles


def _names(job):
    """Yield (what, string) of every path and name in the job's request."""
    yield "input directory", job.input_directory
    yield "output directory", job.output_directory
    for role, name in _executables(job):
        yield f"{role} executable", name
    for path in job.streaming.input_paths:
        yield "input path", path
    for name, value in job.streaming.environment.items():
        yield "environment variable name", name
        yield f"environment variable {name!r}", value


def _environment_problem(environment):
    """Return why the job's environment cannot be given, or None."""
    for name in environment:
        if not name or "=" in name:
            return (f"environment variable name {name!r} is empty or "
                    "holds '='")
    return None


def _input_problems(job):
    """Yield why the job's input cannot be read."""
    if not job.streaming.input_paths:
        if not os.path.isdir(job.input_directory):
            yield (f"input directory {job.input_directory!r} is not a "
                   "directory")
        return
    for path in job.streaming.input_paths:
        if not os.path.exists(path):
            yield f"input path {path!r} does not exist"
        elif not (os.path.isdir(path) or os.path.isfile(path)):
            yield f"input path {path!r} is neither a file nor a directory"


def _inputs_guarded(job):
    """Return (label, path) of the inputs the output must not replace."""
    if not job.streaming.input_paths:
        return [("the input directory", job.input_directory)]
    return [(f"input path {path!r}", path)
            for path in job.streaming.input_paths]


def job_problem(job, shared_dir):
    """Return why the Manager must not run `job`, or None if it may."""
    problem = next(filter(None, (
        _name_problem(what, path) for what, path in _names(job))), None)
    if problem:
        return problem  # The checks below could not even ask about it.
    problems = [_environment_problem(job.streaming.environment)]
    if job.num_mappers < 1:
        problems.append(f"num_mappers must be at least 1, not "
                        f"{job.num_mappers}")
    # A streaming job may have no reducers: it is map-only.
    fewest = 0 if job.is_streaming else 1
    if not fewest <= job.num_reducers <= MAX_PARTITIONS:
        problems.append(f"num_reducers must be between {fewest} and "
                        f"{MAX_PARTITIONS}, not {job.num_reducers}")
    problems.extend(_input_problems(job))
    executables = _executables(job)
    problems.extend(_executable_problem(role, name)
                    for role, name in executables)
    problems.append(output_problem(
        job.output_directory, _inputs_guarded(job),
        [(f"the {role}", locate(name) or name)
         for role, name in executables],
        shared_dir))
    return next((problem for problem in problems if problem), None)


def output_problem(output, inputs, executables, shared_dir=None,
                   cwd_label="the Manager's working directory"):
    """Return why `output` must not be replaced by a job's output, or None.

    Refused: the root, the home directory, the working directory (named
    `cwd_label`) or an ancestor of it, one of the `inputs` or an ancestor
    of it, a directory that holds one of the `executables` (`inputs` and
    `executables` are pairs of a label and a path), the shared directory
    (if given), an ancestor of it or anything inside it, and a path that
    exists but is not a plain directory (a file or a symbolic link).
    """
    return next(_output_problems(output, inputs, executables,
                                 shared_dir, cwd_label), None)


def _output_problems(output, inputs, executables, shared_dir, cwd_label):
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
        *inputs,
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
