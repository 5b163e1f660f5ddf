"""`mapreduce-submit`: send a job, or a shutdown, to a Manager."""

import os
import socket

import click

from mapreduce import protocol
from mapreduce.executables import locate
from mapreduce.manager.safety import output_problem

CONNECT_TIMEOUT = 10.0


def send(host, port, msg):
    """Send one message to the Manager; raise ClickException on failure."""
    try:
        with socket.create_connection((host, port),
                                      timeout=CONNECT_TIMEOUT) as sock:
            sock.sendall(protocol.encode(msg))
    except OSError as exc:
        raise click.ClickException(
            f"cannot reach the Manager at {host}:{port}: "
            f"{exc.strerror or exc}") from exc


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


def _check_input(path):
    """Fail unless `path` is a directory."""
    if not os.path.exists(path):
        raise click.ClickException(
            f"input directory {path!r} does not exist")
    if not os.path.isdir(path):
        raise click.ClickException(
            f"input directory {path!r} is not a directory")


def _check_executable(path, role):
    """Fail unless `path` is an executable file; return its absolute path.

    A bare name (no slash) is looked up on PATH, as the Worker will.
    """
    if locate(path) is None:
        raise click.ClickException(f"{role} {path!r} is not found on PATH")
    path = locate(path)
    if not os.path.exists(path):
        raise click.ClickException(f"{role} {path!r} does not exist")
    if not os.path.isfile(path):
        raise click.ClickException(f"{role} {path!r} is not a file")
    if not os.access(path, os.X_OK):
        raise click.ClickException(f"{role} {path!r} is not executable "
                                   f"(try: chmod +x {path})")
    return os.path.abspath(path)


def _check_output(output, input_directory, mapper, reducer):
    """Fail if the output directory is a place a job must not replace.

    The same rules as the Manager's, which checks again before it deletes.
    """
    problem = output_problem(output, input_directory,
                             [("the mapper", mapper),
                              ("the reducer", reducer)],
                             cwd_label="the current directory")
    if problem:
        raise click.ClickException(problem)


@click.command(cls=OneLineErrors,
               context_settings={"help_option_names": ["--help"]})
@click.option("--host", "-h", default="localhost", show_default=True,
              help="The Manager's host.")
@click.option("--port", "-p", default=6000, show_default=True, type=int,
              help="The Manager's port.")
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
@click.option("--shutdown", "-s", is_flag=True, default=False,
              help="Shut down the Manager and its Workers instead.")
def main(host, port, input_directory, output_directory, mapper, reducer,
         num_mappers, num_reducers, shutdown):
    """Submit a MapReduce job to a Manager, or shut the Manager down."""
    if shutdown:
        send(host, port, protocol.Shutdown())
        click.echo(f"Shut down Manager {host}:{port}")
        return
    for value, option in ((mapper, "--mapper"), (reducer, "--reducer")):
        if not value:
            raise click.ClickException(f"missing option {option} (a job "
                                       "needs a mapper and a reducer)")
    _check_input(input_directory)
    shown_mapper, shown_reducer = mapper, reducer
    mapper = _check_executable(mapper, "mapper")
    reducer = _check_executable(reducer, "reducer")
    _check_output(output_directory, input_directory, mapper, reducer)
    job = protocol.NewManagerJob(
        input_directory=os.path.abspath(input_directory),
        output_directory=os.path.abspath(output_directory),
        mapper_executable=mapper,
        reducer_executable=reducer,
        num_mappers=num_mappers,
        num_reducers=num_reducers,
    )
    send(host, port, job)
    click.echo(f"Submitted job to Manager {host}:{port}")
    click.echo(f"input directory      {input_directory}")
    click.echo(f"output directory     {output_directory}")
    click.echo(f"mapper executable    {shown_mapper}")
    click.echo(f"reducer executable   {shown_reducer}")
    click.echo(f"num mappers          {num_mappers}")
    click.echo(f"num reducers         {num_reducers}")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter  # click fills them
