"""`mapreduce-submit`: send a job, or a shutdown, to a Manager.

The job message is exactly the specification's. The seven lines of the
specification are printed once it is delivered; then the command reads
the Manager's answer on the same connection (`job_accepted`) and prints
the job's id. `--wait` then follows the job to its end (see
`mapreduce.client`).
"""

import os
import re
import sys

import click

from mapreduce import client, defaults, protocol
from mapreduce.executables import locate, not_found_text
from mapreduce.manager.safety import output_problem
from mapreduce.options import secret_file
from mapreduce.progress import ProgressView, failure_text, success_lines

# Exit status when the Manager went away, or shut down, before the job
# ended (a failed or rejected job exits with 1, like any other error).
LOST_MANAGER = 3
# What a previous job leaves in an output directory: its part files.
PART_FILE = re.compile(r"part-[0-9]{5,}")


class OneLineErrors(click.Command):
    """A click command whose usage errors, too, are one `Error:` line."""

    def make_context(self, *args, **kwargs):
        """Parse the options; report a bad one without the usage text."""
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            error = click.ClickException(exc.format_message())
            error.exit_code = exc.exit_code
            raise error from exc


def fail(message, exit_code=1):
    """Raise a ClickException that exits with `exit_code`."""
    error = click.ClickException(message)
    error.exit_code = exit_code
    return error


def send_shutdown(address):
    """Send a `shutdown` message; raise ClickException on failure."""
    try:
        client.shut_down(address)
    except client.ClientError as exc:
        raise fail(str(exc)) from exc


def _check_input(path):
    """Fail unless `path` is a directory."""
    if not os.path.exists(path):
        raise fail(f"input directory {path!r} does not exist")
    if not os.path.isdir(path):
        raise fail(f"input directory {path!r} is not a directory")


def check_executable(path, role):
    """Fail unless `path` is an executable file; return its absolute path.

    A bare name (no slash) is a file in the current directory if there is
    one, else looked up on PATH (mapreduce.executables.locate).
    """
    if locate(path) is None:
        raise fail(not_found_text(role, path))
    path = locate(path)
    if not os.path.exists(path):
        raise fail(f"{role} {path!r} does not exist")
    if not os.path.isfile(path):
        raise fail(f"{role} {path!r} is not a file")
    if not os.access(path, os.X_OK):
        raise fail(f"{role} {path!r} is not executable "
                   f"(try: chmod +x {path})")
    return os.path.abspath(path)


def _check_output(output, input_directory, mapper, reducer):
    """Fail if the output directory is a place a job must not replace.

    The same rules as the Manager's, which checks again before it deletes.
    """
    problem = output_problem(output,
                             [("the input directory", input_directory)],
                             [("the mapper", mapper),
                              ("the reducer", reducer)],
                             cwd_label="the current directory")
    if problem:
        raise fail(problem)


def foreign_entries(output):
    """Return what `output` holds besides a previous job's part files."""
    try:
        with os.scandir(output) as entries:
            return sorted(
                entry.name + ("/" if entry.is_dir() else "")
                for entry in entries
                if not (PART_FILE.fullmatch(entry.name)
                        and entry.is_file(follow_symlinks=False)))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise fail(f"cannot read output directory {output!r}: "
                   f"{exc.strerror or exc}") from exc


def _check_overwrite(output):
    """Fail if the job would delete files that no job made."""
    foreign = foreign_entries(output)
    if foreign:
        shown = ", ".join(foreign[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise fail(f"output directory {output!r} holds {shown}{more}, not "
                   "just part files of an earlier job; the job would "
                   "delete them (use --overwrite to allow it)")


def _job(options):
    """Check the job's options; return the message to send."""
    for option in ("mapper", "reducer"):
        if not options[option]:
            raise fail(f"missing option --{option} (a job needs a mapper "
                       "and a reducer)")
    _check_input(options["input_directory"])
    mapper = check_executable(options["mapper"], "mapper")
    reducer = check_executable(options["reducer"], "reducer")
    _check_output(options["output_directory"], options["input_directory"],
                  mapper, reducer)
    if not options["overwrite"]:
        _check_overwrite(options["output_directory"])
    return protocol.NewManagerJob(
        input_directory=os.path.abspath(options["input_directory"]),
        output_directory=os.path.abspath(options["output_directory"]),
        mapper_executable=mapper,
        reducer_executable=reducer,
        num_mappers=options["num_mappers"],
        num_reducers=options["num_reducers"],
    )


def wait(address, job_id):
    """Follow the job to its end; show progress, then how it ended."""
    view = ProgressView(lambda text: click.echo(text, nl=False),
                        sys.stdout.isatty())
    summary = None
    try:
        for summary in client.follow(address, job_id):
            view.show(summary)
    except client.ClientError as exc:
        view.close()
        raise fail(str(exc), LOST_MANAGER) from exc
    view.close()
    if summary["state"] == "finished":
        for line in success_lines(summary):
            click.echo(line)
        return
    exit_code = LOST_MANAGER if summary["state"] == "abandoned" else 1
    raise fail(failure_text(summary), exit_code)


@click.command(cls=OneLineErrors,
               context_settings={"help_option_names": ["--help"]})
@click.option("--host", "-h", default=defaults.MANAGER_HOST,
              show_default=True, help="The Manager's host.")
@click.option("--port", "-p", default=defaults.MANAGER_PORT,
              show_default=True, type=int, help="The Manager's port.")
@click.option("--input", "-i", "input_directory",
              default=os.path.join("tests", "testdata", "input"),
              show_default=True, help="Input directory.")
@click.option("--output", "-o", "output_directory", default="output",
              show_default=True,
              help="Output directory; replaced by the job's output.")
@click.option("--mapper", "-m", "mapper",
              help="Mapper executable (required for a job).")
@click.option("--reducer", "-r", "reducer",
              help="Reducer executable (required for a job).")
@click.option("--nmappers", "num_mappers", default=2, show_default=True,
              type=click.IntRange(min=1), help="Number of map tasks.")
@click.option("--nreducers", "num_reducers", default=2, show_default=True,
              type=click.IntRange(min=1, max=protocol.MAX_PARTITIONS),
              help="Number of reduce tasks (output files).")
@click.option("--wait", "-w", is_flag=True, default=False,
              help="Follow the job to its end; exit 0 only if it finished.")
@click.option("--overwrite", is_flag=True, default=False,
              help="Let the job replace an output directory that holds "
                   "more than an earlier job's part files.")
@click.option("--shutdown", "-s", is_flag=True, default=False,
              help="Shut down the Manager and its Workers instead.")
@secret_file
def main(**options):
    """Submit a MapReduce job to a Manager, or shut the Manager down."""
    host, port = options["host"], options["port"]
    address = client.manager_address(host, port, options["secret"])
    if options["shutdown"]:
        send_shutdown(address)
        click.echo(f"Shut down Manager {host}:{port}")
        return
    job = _job(options)

    def delivered():
        """Print the specification's seven lines once the job is sent."""
        click.echo(f"Submitted job to Manager {host}:{port}")
        click.echo(f"input directory      {options['input_directory']}")
        click.echo(f"output directory     {options['output_directory']}")
        click.echo(f"mapper executable    {options['mapper']}")
        click.echo(f"reducer executable   {options['reducer']}")
        click.echo(f"num mappers          {options['num_mappers']}")
        click.echo(f"num reducers         {options['num_reducers']}")

    try:
        job_id = client.submit(address, job, on_sent=delivered)
    except client.ClientError as exc:
        raise fail(str(exc)) from exc
    click.echo(f"job id               {job_id}")
    if options["wait"]:
        wait(address, job_id)


if __name__ == "__main__":
    main.main()
