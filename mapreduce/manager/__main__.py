"""`mapreduce-manager`: run a Manager until it is told to shut down."""

import click

from mapreduce import defaults
from mapreduce.logs import LEVELS, configure
from mapreduce.manager import Manager
from mapreduce.options import hidden_timings, secret_file

OFF = "off"


class WebPort(click.ParamType):
    """A port number for the dashboard (0: a free one), or `off`."""

    name = "PORT|off"

    def convert(self, value, param, ctx):
        """Return the port as an int, or None for `off`."""
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip()
        if text.lower() == OFF:
            return None
        if text.isdigit() and int(text) <= 65535:
            return int(text)
        return self.fail(f"{value!r} is not a port number (0 to 65535) "
                         f"or {OFF!r}", param, ctx)


@click.command(context_settings={"help_option_names": ["--help"]})
@click.option("--host", default=defaults.MANAGER_HOST, show_default=True,
              help="Address to listen on (TCP and UDP).")
@click.option("--port", default=defaults.MANAGER_PORT, show_default=True,
              type=int,
              help="Port to listen on, for both TCP and UDP.")
@click.option("--web-port", "web_port", default=str(defaults.WEB_PORT),
              show_default=True, type=WebPort(),
              help="Port of the live dashboard (http://HOST:PORT/); 0 picks "
                   "a free one, 'off' serves none.")
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
@secret_file
def main(**options):
    """Run a MapReduce Manager until it receives a shutdown message."""
    configure(options.pop("logfile"), options.pop("loglevel"))
    host, port = options.pop("host"), options.pop("port")
    try:
        # The rest are ManagerOptions: web_port, the secret and the hidden
        # timings.
        Manager(host, port, options.pop("shared_dir"), **options)
    except OSError as exc:
        raise click.ClickException(
            f"cannot run the Manager on {host}:{port}: {exc}") from exc


if __name__ == "__main__":
    main.main()
