"""`mapreduce-streaming`: a madoop or Hadoop Streaming job, on a cluster.

It takes madoop's and Hadoop Streaming's flags (`-input`, `-output`,
`-mapper`, `-reducer`, `-combiner`, `-partitioner`, `-numReduceTasks`,
`-cmdenv`, `-D`), checks them, submits the job to a running Manager
(`new_manager_job` with the `streaming` extension, see
mapreduce.protocol.Streaming), shows its progress, waits for its end and
prints a summary with the job's counters. It exits 0 when the job
finished, 1 when it failed (with the failing program's stderr tail) or
was rejected, 2 for bad arguments and 3 when the Manager went away.
"""

import dataclasses
import os
import re

import click

from mapreduce import client, defaults, protocol
from mapreduce.manager.job import regular_files
from mapreduce.manager.safety import output_problem
from mapreduce.options import secret_file
from mapreduce.submit import OneLineErrors, check_executable, fail, wait

# madoop's default number of reducers (-numReduceTasks): at most this many
# part files, one per partition that gets lines.
DEFAULT_REDUCERS = 4
# Hadoop's `-reducer NONE`: a map-only job.
NO_REDUCER = "NONE"
# The -D settings that set the job's task counts, new name then old.
REDUCES_SETTINGS = ("mapreduce.job.reduces", "mapred.reduce.tasks")
MAPS_SETTINGS = ("mapreduce.job.maps", "mapred.map.tasks")
# Where the Manager is, when --manager is not given.
MANAGER_VARIABLE = "MAPREDUCE_MANAGER"
# Hadoop makes a setting's name an environment variable's this way.
NOT_IN_VARIABLE_NAMES = re.compile(r"[^A-Za-z0-9_]")
USAGE_ERROR = 2
# The most map tasks -D mapreduce.job.maps may ask for.
MAX_MAPS = 1000000


class StreamingCommand(OneLineErrors):
    """One-line usage errors that name a single-dash option whole.

    click reads an unknown `-bogus` as the short options `-b -o ...` and
    complains about `-b`; this names `-bogus`, as the user typed it.
    """

    def make_context(self, *args, **kwargs):
        """Parse the arguments; name an unknown single-dash option whole."""
        # click calls make_context(info_name, args, ...).
        words = list(args[1] if len(args) > 1 else kwargs.get("args", ()))
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:
            typed = _unknown_word(exc.format_message(), words)
            if typed is not None:
                exc.message = f"no such option: {typed}"
            raise


def _unknown_word(message, args):
    """Return the unknown single-dash word a click error is about, or None."""
    match = re.match(r"No such option:? '?(-[^-'\s])'?", message)
    if match is None:
        return None
    return next((arg.partition("=")[0] for arg in args
                 if arg.startswith(match.group(1)) and len(arg) > 2
                 and not arg.startswith("--")), None)


def split_assignment(text, what):
    """Return (name, value) of `NAME=VALUE`; one-line error otherwise."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise fail(f"{what} {text!r} is not NAME=VALUE", USAGE_ERROR)
    return name, value


def manager_address(text):
    """Return (host, port) of `HOST:PORT`; one-line error otherwise."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise fail(f"--manager {text!r} is not HOST:PORT", USAGE_ERROR)
    return host, int(port)


@dataclasses.dataclass
class Settings:
    """What -D, -cmdenv and -numReduceTasks make of the job."""

    num_mappers: int
    num_reducers: int
    environment: dict


def _count_setting(settings, names, counts):
    """Return the int of the first of `names` in `settings`, or None.

    `counts` is the range the number must be in.
    """
    for name in names:
        if name in settings:
            value = settings[name]
            if not value.isdigit() or int(value) not in counts:
                raise fail(f"-D {name}={value}: not a whole number from "
                           f"{counts.start} to {counts.stop - 1}",
                           USAGE_ERROR)
            return int(value)
    return None


def job_settings(options, num_input_files):
    """Return the task counts and environment from the options.

    Every -D setting is also in the programs' environment, named as
    Hadoop names it (`mapreduce.job.name` as `mapreduce_job_name`); the
    -cmdenv variables come on top. Reducers: -numReduceTasks, else the
    -D setting, else madoop's 4; `-reducer NONE` means none. Map tasks:
    the -D setting, else one per input file.
    """
    settings = dict(split_assignment(text, "-D")
                    for text in options["settings"])
    environment = {NOT_IN_VARIABLE_NAMES.sub("_", name): value
                   for name, value in settings.items()}
    environment.update(split_assignment(text, "-cmdenv")
                       for text in options["cmdenv"])
    reducers = options["num_reducers"]
    if reducers is None:
        reducers = _count_setting(settings, REDUCES_SETTINGS,
                                  range(protocol.MAX_PARTITIONS + 1))
    if options["reducer"] == NO_REDUCER:
        reducers = 0
    maps = _count_setting(settings, MAPS_SETTINGS, range(1, MAX_MAPS + 1))
    return Settings(
        num_mappers=maps or max(1, num_input_files),
        num_reducers=DEFAULT_REDUCERS if reducers is None else reducers,
        environment=environment)


def input_paths(paths):
    """Check every -input; return their absolute paths and file count.

    A file is one input; a directory gives its regular files, as the
    Manager will list them.
    """
    absolute, files = [], 0
    for path in paths:
        if os.path.isdir(path):
            try:
                files += len(regular_files(path))
            except OSError as exc:
                raise fail(f"cannot read input {path!r}: "
                           f"{exc.strerror or exc}") from exc
        elif os.path.isfile(path):
            files += 1
        elif os.path.exists(path):
            raise fail(f"input {path!r} is neither a file nor a directory")
        else:
            raise fail(f"input {path!r} does not exist")
        absolute.append(os.path.abspath(path))
    return absolute, files


def _executables(options, map_only):
    """Check the programs; return role -> absolute path ('' for none)."""
    roles = {"mapper": options["mapper"], "reducer": options["reducer"],
             "combiner": options["combiner"],
             "partitioner": options["partitioner"]}
    if map_only:
        roles["reducer"] = None
    elif not roles["reducer"]:
        raise fail("missing option -reducer (or -numReduceTasks 0 for a "
                   "map-only job)", USAGE_ERROR)
    return {role: check_executable(name, role) if name else ""
            for role, name in roles.items()}


def _check_output(output, inputs, programs):
    """Refuse an output directory that exists, as madoop does, or is unsafe.

    Also refused (the Manager's rules): the root, the home directory,
    the current directory or one of its ancestors, an input or one of its
    ancestors, a directory holding one of the programs.
    """
    if os.path.lexists(output):
        raise fail(f"output directory {output!r} already exists (remove "
                   "it, or choose another)")
    problem = output_problem(
        output, [(f"input {path!r}", path) for path in inputs],
        [(f"the {role}", path) for role, path in programs.items() if path],
        cwd_label="the current directory")
    if problem:
        raise fail(problem)


def build_job(options):
    """Check the options; return the `new_manager_job` message to send."""
    inputs, num_files = input_paths(options["inputs"])
    settings = job_settings(options, num_files)
    programs = _executables(options, settings.num_reducers == 0)
    _check_output(options["output"], inputs, programs)
    return protocol.NewManagerJob(
        input_directory=inputs[0],
        output_directory=os.path.abspath(options["output"]),
        mapper_executable=programs["mapper"],
        reducer_executable=programs["reducer"],
        num_mappers=settings.num_mappers,
        num_reducers=settings.num_reducers,
        streaming=protocol.Streaming(
            input_paths=inputs,
            combiner=programs["combiner"],
            partitioner=programs["partitioner"],
            environment=settings.environment))


def _where(text):
    """Return the Manager's (host, port): --manager, its variable, default."""
    if text is None:
        return defaults.MANAGER_HOST, defaults.MANAGER_PORT
    return manager_address(text)


@click.command(cls=StreamingCommand,
               context_settings={"help_option_names": ["--help", "-help"]})
@click.option("-input", "inputs", multiple=True, required=True,
              metavar="PATH", help="Input file or directory (every regular "
              "file in it, by name); repeat for more.")
@click.option("-output", "output", required=True, metavar="DIR",
              help="Output directory for the part files; must not exist.")
@click.option("-mapper", "mapper", required=True, metavar="PROGRAM",
              help="Mapper executable: a path, a file in the current "
              "directory, or a name on PATH.")
@click.option("-reducer", "reducer", metavar="PROGRAM",
              help="Reducer executable (NONE, or none with "
              "-numReduceTasks 0: a map-only job).")
@click.option("-combiner", "combiner", metavar="PROGRAM",
              help="Combiner executable, run over each map task's sorted "
              "output per partition.")
@click.option("-partitioner", "partitioner", metavar="PROGRAM",
              help="Partitioner executable, as madoop's: reads map output "
              "lines, prints a partition number per line.")
@click.option("-numReduceTasks", "num_reducers",
              type=click.IntRange(min=0, max=protocol.MAX_PARTITIONS),
              help=f"At most this many reducers (default "
              f"{DEFAULT_REDUCERS}, as madoop); 0: map-only.")
@click.option("-cmdenv", "cmdenv", multiple=True, metavar="NAME=VALUE",
              help="An environment variable for the programs; repeatable.")
@click.option("-D", "settings", multiple=True, metavar="NAME=VALUE",
              help="A job setting: mapreduce.job.reduces, "
              "mapreduce.job.maps (and their mapred.* names); every one "
              "is also in the programs' environment.")
@click.option("-file", "files", multiple=True, metavar="PATH",
              help="Accepted and ignored, for Hadoop scripts: the cluster "
              "reads programs where they are.")
@click.option("--manager", "manager", envvar=MANAGER_VARIABLE,
              show_envvar=True, metavar="HOST:PORT",
              help=f"The Manager [default: {defaults.MANAGER_HOST}:"
              f"{defaults.MANAGER_PORT}].")
@secret_file
def main(**options):
    """Run a Hadoop Streaming (or madoop) job on a MapReduce cluster.

    Submits the job to the Manager, shows its progress, waits for its
    end and prints its part files and counters.
    """
    host, port = _where(options["manager"])
    job = build_job(options)
    address = client.manager_address(host, port, options["secret"])
    try:
        job_id = client.submit(address, job)
    except client.ClientError as exc:
        raise fail(str(exc)) from exc
    click.echo(f"Submitted job {job_id} to Manager {host}:{port}")
    wait(address, job_id)


if __name__ == "__main__":
    main.main()
