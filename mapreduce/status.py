"""`mapreduce-status`: what a Manager is doing, as text or JSON.

It sends the `status_request` extension and shows the answer: the
Workers, the running job, the queue and the jobs that ended lately.
"""

import json

import click

from mapreduce import client, defaults
from mapreduce.options import secret_file
from mapreduce.progress import counters_inline, progress_line

RECENT_SHOWN = 10


def _age(seconds):
    """Return an age in seconds as text, '-' when unknown."""
    return "-" if seconds is None else f"{seconds:.1f}s"


def _duration(seconds):
    """Return a duration as '1h 2m 3s', '2m 3s' or '3.0s'."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h {minutes}m {secs}s" if hours
            else f"{minutes}m {secs}s")


def worker_lines(workers):
    """Return one line per Worker: state, task, heartbeat age, tasks done."""
    lines = [f"Workers: {len(workers)}"]
    for worker in workers:
        task = worker["task"]
        doing = ("-" if task is None else
                 f"{task['kind']} task {task['task_id']} of job "
                 f"{task['job_id']}")
        lines.append(
            f"  {worker['host']}:{worker['port']:<6} {worker['state']:<8}"
            f"{doing:<26} heartbeat {_age(worker['last_heartbeat_age'])} "
            f"ago, {worker['tasks_done']} tasks done")
    return lines


def job_lines(status):
    """Return the running job, the queue and the recent jobs, as lines."""
    running = status["running"]
    lines = ["Running: " + ("none" if running is None else
                            progress_line(running))]
    if running is not None:
        lines.append(f"  {running['input_directory']} -> "
                     f"{running['output_directory']}")
        counters = counters_inline(running.get("counters") or {})
        if counters:
            lines.append(f"  counters: {counters}")
    lines.append(f"Queue: {len(status['queue'])}")
    lines += [f"  job {job['job_id']}: {job['input_directory']} -> "
              f"{job['output_directory']}" for job in status["queue"]]
    recent = status["recent"]
    lines.append(f"Recent jobs: {len(recent)}"
                 + (f" (newest {RECENT_SHOWN} shown)"
                    if len(recent) > RECENT_SHOWN else ""))
    for job in recent[:RECENT_SHOWN]:
        reason = f": {job['reason']}" if job["reason"] else ""
        lines.append(f"  job {job['job_id']} {job['state']} in "
                     f"{_duration(job['elapsed'])}{reason}")
    return lines


def status_text(status):
    """Return the whole status as text."""
    manager = status["manager"]
    uptime = manager["now"] - manager["started_at"]
    lines = [f"Manager {manager['host']}:{manager['port']}, up "
             f"{_duration(uptime)}, shared directory {manager['shared_dir']}"]
    if manager["web_port"] is not None:
        lines.append(f"Dashboard: http://{manager['host']}:"
                     f"{manager['web_port']}/")
    return "\n".join(lines + worker_lines(status["workers"])
                     + job_lines(status))


@click.command(context_settings={"help_option_names": ["--help"]})
@click.option("--host", "-h", default=defaults.MANAGER_HOST,
              show_default=True, help="The Manager's host.")
@click.option("--port", "-p", default=defaults.MANAGER_PORT,
              show_default=True, type=int, help="The Manager's port.")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print the Manager's answer as JSON.")
@secret_file
def main(host, port, as_json, secret):
    """Show a Manager's Workers, running job, queue and recent jobs."""
    try:
        status = client.status(client.manager_address(host, port, secret))
    except client.ClientError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(status, indent=2))
    else:
        click.echo(status_text(status))


if __name__ == "__main__":
    main.main()
