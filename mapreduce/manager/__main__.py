"""`mapreduce-manager`: run a Manager until it is told to shut down."""

import click

from mapreduce import defaults
from mapreduce.logs import LEVELS, configure
from mapreduce.manager import Manager
from mapreduce.options import hidden_timings


@click.command(context_settings={"help_option_names": ["--help"]})
@click.option("--host", default=defaults.MANAGER_HOST, show_default=True,
              help="Address to listen on (TCP and UDP).")
@click.option("--port", default=defaults.MANAGER_PORT, show_default=True,
              type=int,
              help="Port to listen on, for both TCP and UDP.")
@click.option("--logfile", type=click.Path(dir_okay=False),
              help="Write the log here instead of to stderr.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(LEVELS, case_sensitive=False))
@click.option("--shared_dir", "shared_dir",
              type=click.Path(file_okay=False, exists=True),
              help="Where to make the shared directory for intermediate "
                   "files; every Worker must reach it. Default: the "
                   "system temp dir.")
@hidden_timings(heartbeat_timeout=defaults.HEARTBEAT_TIMEOUT,
                max_attempts=defaults.MAX_ATTEMPTS,
                send_timeout=defaults.SEND_TIMEOUT)
def main(host, port, logfile, loglevel, shared_dir, **timings):
    """Run a MapReduce Manager until it receives a shutdown message."""
    configure(logfile, loglevel)
    try:
        Manager(host, port, shared_dir, **timings)
    except OSError as exc:
        raise click.ClickException(
            f"cannot run the Manager on {host}:{port}: {exc}") from exc


if __name__ == "__main__":
    main.main()
