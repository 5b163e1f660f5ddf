"""The dashboard page in a real headless browser (Debian's chromium).

A small stand-in HTTP server answers through the dashboard's `route()`
with sample data shaped like the Manager's status answers; chromium loads
the page, lets its script poll for a few seconds of virtual time, and
hands back the resulting DOM, which the tests read. A screenshot of the
page during a running job is saved as var/dashboard.png.

One test loads the page from a real Manager instead, with real Workers
and a job held running (tests/live_dashboard.py), and saves its
screenshot as var/dashboard-live.png.
"""

import pathlib
import re

import pytest

from mapreduce.manager.dashboard import handler_for, route
from tests import live_dashboard
from tests.browser import (StandInServer, chromium_or_skip, parse_html,
                           skip_without_chromium)
from tests.dashboard_sample import (FAILED_ATTEMPTS, FAILED_JOB,
                                    FINISHED_JOB, HOSTILE_GROUP,
                                    HOSTILE_HOST, HOSTILE_PATH,
                                    HOSTILE_STRINGS, RUNNING_ATTEMPTS,
                                    RUNNING_JOB, UNKNOWN_JOB, EmptySource)

skip_without_chromium(whole_module=True)

VAR = pathlib.Path(__file__).resolve().parent.parent / "var"
SCREENSHOT = VAR / "dashboard.png"
LIVE_SCREENSHOT = VAR / "dashboard-live.png"
BAR_CLASSES = {"bar-map", "bar-reduce", "bar-failed", "bar-taken-back"}
WORKERS = ["localhost:6001", "localhost:6002", "localhost:6003",
           "localhost:6004", f"{HOSTILE_HOST}:6005"]
WORKER_STATES = ["busy", "busy", "dead", "ready", "joining"]


@pytest.fixture(name="browser")
def fixture_browser(tmp_path):
    """Give a headless chromium, or skip where there is none."""
    return chromium_or_skip(tmp_path)


def load(browser, source, fragment="", **options):
    """Serve the dashboard for `source`, load it, return the parsed DOM."""
    with StandInServer(handler_for(source)) as server:
        dom = browser.load(server.url + fragment, **options)
    return parse_html(dom)


def expected_class(attempt):
    """Return the colour class a bar must have for an attempt tuple."""
    _, kind, _, _, outcome = attempt
    return {"failed": "bar-failed",
            "taken_back": "bar-taken-back"}.get(outcome, f"bar-{kind}")


def check_timeline(page, attempts):
    """Check one bar per attempt, per Worker, with the right colour."""
    bars = page.find(id="timeline").find_all(cls="bar")
    assert len(bars) == len(attempts)
    for port in {attempt[0] for attempt in attempts}:
        row = page.find(id="timeline").find(cls="tl-row",
                                            data_worker=f"localhost:{port}")
        row_bars = row.find_all(cls="bar")
        wanted = [attempt for attempt in attempts if attempt[0] == port]
        assert len(row_bars) == len(wanted)
        for attempt, drawn in zip(wanted, row_bars):
            _, kind, task_id, _, outcome = attempt
            assert drawn.classes & BAR_CLASSES == {expected_class(attempt)}
            assert drawn.attrs["data-kind"] == kind
            assert drawn.attrs["data-task-id"] == str(task_id)
            assert drawn.attrs["data-outcome"] == outcome
            assert ("bar-running" in drawn.classes) == (outcome == "running")
    return bars


def percent(style, name):
    """Return the percentage of `name` (left, width) in a style attribute."""
    return float(re.search(rf"{name}:\s*([0-9.]+)%", style).group(1))


def test_running_job_workers_and_timeline(browser, source):
    """The page lists the Workers and jobs; the timeline has every attempt.

    Also saves the screenshot of the dashboard during a running job.
    """
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    page = load(browser, source, screenshot=SCREENSHOT, window=(1400, 1400))
    assert page.find("body").attrs["data-state"] == "live"
    assert SCREENSHOT.stat().st_size > 10000

    rows = [row for row in page.find(id="workers").find_all("tr")
            if "data-worker" in row.attrs]
    assert [row.attrs["data-worker"] for row in rows] == WORKERS
    assert [row.find(cls="badge").text() for row in rows] == WORKER_STATES
    assert "reduce task 1 of Job 7" in rows[0].text()

    running = page.find(id="running").find(data_job_id=str(RUNNING_JOB))
    assert "reduce stage" in running.text()
    assert [text.text() for text in running.find_all(cls="progress-text")] \
        == ["4 / 4 tasks", "1 / 3 tasks"]
    queued = [row.attrs["data-job-id"] for row in
              page.find(id="queue").find_all("tr") if "data-job-id" in
              row.attrs]
    assert queued == ["8", "9"]
    recent = page.find(id="recent")
    assert [row.attrs["data-job-id"] for row in recent.find_all("tr")
            if "data-job-id" in row.attrs] == ["6", "5", "4"]
    assert [badge.text() for badge in recent.find_all(cls="badge")] == \
        ["failed", "finished", "rejected"]

    assert page.find(id="job-heading").text() == f"Timeline of job " \
                                                 f"{RUNNING_JOB}"
    bars = check_timeline(page, RUNNING_ATTEMPTS)
    for drawn in bars:  # running attempts reach "now", others end before
        end = percent(drawn.attrs["style"], "left") + \
            percent(drawn.attrs["style"], "width")
        if "bar-running" in drawn.classes:
            assert 99.0 < end <= 100.5
        else:
            assert end < 75.0
    legend = page.find(cls="legend").text()
    for word in ("map", "reduce", "failed", "taken back", "running"):
        assert word in legend


def test_selected_failed_job(browser, source):
    """#job=N shows that job: its attempts, reason and stderr."""
    page = load(browser, source, f"#job={FAILED_JOB}")
    assert page.find(id="job-heading").text().startswith(
        f"Timeline of job {FAILED_JOB}")
    check_timeline(page, FAILED_ATTEMPTS)
    detail = page.find(id="job").find(cls="failure")
    assert source.summaries[FAILED_JOB]["reason"] in detail.text()
    assert detail.find("pre").text() == \
        source.summaries[FAILED_JOB]["stderr_tail"]
    shown = page.find(id="recent").find("tr", data_job_id=str(FAILED_JOB))
    assert "shown" in shown.classes


def test_selected_streaming_job_shows_its_counters(browser, source):
    """A streaming job: its input paths, combiner, and counters by group.

    The counters come sorted by group and name, as text only (a group
    named with markup makes no element).
    """
    page = load(browser, source, f"#job={FINISHED_JOB}")
    job = page.find(id="job")
    facts = job.find(cls="facts").text()
    assert "/home/student/a.txt, " + HOSTILE_PATH in facts
    assert "Combiner/home/student/combine.py" in facts
    assert "Partitioner" not in facts
    assert "\u00d7 at most 3 reduce tasks" in facts
    rows = [[cell.text() for cell in row.find_all("td")]
            for row in job.find(cls="counters").find_all("tr")[1:]]
    assert rows == [[HOSTILE_GROUP, "<b>n</b>", "-1"],
                    ["wc", "lines", "56"], ["wc", "words", "1234"]]
    assert not page.find_all("img") and not page.find_all("b")


def test_unknown_selected_job(browser, source):
    """A job the Manager does not know is said so, not an error."""
    page = load(browser, source, f"#job={UNKNOWN_JOB}", budget_ms=2000)
    assert f"does not know job {UNKNOWN_JOB}" in page.find(id="job").text()
    assert not page.find_all(cls="bar")


def test_queued_job_selected(browser, source):
    """A queued job shows its facts and that no task has started."""
    page = load(browser, source, "#job=8", budget_ms=2000)
    job = page.find(id="job")
    assert "no task has started yet" in job.text()
    assert not job.find_all(cls="bar")
    assert not job.find_all(cls="progress")
    assert source.summaries[8]["input_directory"] in job.text()


def test_empty_cluster(browser):
    """A Manager without Workers or jobs says so in every section."""
    page = load(browser, EmptySource(), budget_ms=2000)
    assert page.find("body").attrs["data-state"] == "live"
    texts = {section: page.find(id=section).text()
             for section in ("running", "workers", "job", "queue", "recent")}
    assert texts == {
        "running": "No job is running.",
        "workers": "No Worker has registered yet. Start one with "
                   "mapreduce-worker.",
        "job": "No job yet: submit one with mapreduce-submit.",
        "queue": "No job is waiting.",
        "recent": "No job has ended yet."}


@pytest.mark.parametrize("fragment", ["", f"#job={FAILED_JOB}"])
def test_hostile_strings_are_only_text(browser, source, fragment):
    """Markup in paths, names, reasons and stderr shows as text only."""
    page = load(browser, source, fragment)
    body = page.find("body")
    text = body.text()
    for hostile in HOSTILE_STRINGS:
        assert hostile in text
    for tag in ("img", "iframe", "b"):
        assert not page.find_all(tag), tag
    assert len(page.find_all("script")) == 1
    assert "data-pwned" not in body.attrs


def answering_while(source, answers):
    """Return a handler whose API answers while `answers(n)` is true.

    `n` counts the /api/status requests so far (1 for the first); when
    `answers(n)` is false, API requests are hung up on without an answer.
    """
    counter = {"status": 0}

    def handler(method, path):
        """Answer like the dashboard, or hang up."""
        if path.startswith("/api/status"):
            counter["status"] += 1
        if path.startswith("/api/") and not answers(counter["status"]):
            return None
        return route(method, path, source)

    return handler


def status_requests(server):
    """Return how many times the page asked for /api/status."""
    return sum(path.startswith("/api/status")
               for _, path in server.requests)


def test_manager_not_reachable(browser, source):
    """A Manager that never answers is reported, and polled again."""
    with StandInServer(answering_while(source, lambda n: False)) as server:
        page = parse_html(browser.load(server.url, budget_ms=4000))
        assert status_requests(server) >= 3
    assert page.find("body").attrs["data-state"] == "unreachable"
    assert page.find(id="connection").text() == "Manager not reachable"
    assert "Manager not reachable" in page.find(id="banner").text()
    assert "hidden" not in page.find(id="banner").attrs
    assert not page.find(id="workers").find_all("tr")


def test_manager_goes_away(browser, source):
    """Data shown before the Manager went away stays, greyed, with a note."""
    with StandInServer(answering_while(source, lambda n: n <= 2)) as server:
        page = parse_html(browser.load(server.url, budget_ms=5000))
        assert status_requests(server) >= 4
    body = page.find("body")
    assert body.attrs["data-state"] == "unreachable"
    assert "stale" in body.classes
    assert "last state it reported" in page.find(id="banner").text()
    assert len(page.find(id="workers").find_all("tr")) == len(WORKERS) + 1


def test_manager_comes_back(browser, source):
    """After the Manager answers again, the page is live again."""
    with StandInServer(answering_while(source, lambda n: n > 2)) as server:
        page = parse_html(browser.load(server.url, budget_ms=5000))
        assert status_requests(server) >= 4
    body = page.find("body")
    assert body.attrs["data-state"] == "live"
    assert "stale" not in body.classes
    assert "hidden" in page.find(id="banner").attrs
    assert len(page.find(id="workers").find_all("tr")) == len(WORKERS) + 1


def drawn_attempts(page):
    """Return (worker, kind, task id, outcome) of every timeline bar."""
    drawn = []
    for row in page.find(id="timeline").find_all(cls="tl-row"):
        for shape in row.find_all(cls="bar"):
            drawn.append((row.attrs["data-worker"], shape.attrs["data-kind"],
                          int(shape.attrs["data-task-id"]),
                          shape.attrs["data-outcome"]))
    return sorted(drawn)


def api_attempts(cluster, job_id):
    """Return the attempts of `/api/jobs/<id>` in drawn_attempts' form."""
    _, _, job = cluster.get(f"/api/jobs/{job_id}")
    return sorted((attempt["worker"], attempt["kind"], attempt["task_id"],
                   attempt["outcome"]) for attempt in job["attempts"])


def test_live_manager(browser, tmp_path, monkeypatch):
    """A real Manager's page: its Workers, its jobs, a bar per attempt.

    Job 1 is held in its map stage while the page loads and polls, so its
    attempts are the same before and after; the screenshot of the page is
    saved as var/dashboard-live.png.
    """
    LIVE_SCREENSHOT.parent.mkdir(exist_ok=True)
    LIVE_SCREENSHOT.unlink(missing_ok=True)
    with live_dashboard.live_cluster(tmp_path, monkeypatch) as cluster:
        before = api_attempts(cluster, live_dashboard.RUNNING_JOB)
        page = parse_html(browser.load(cluster.url, budget_ms=3000,
                                       window=(1400, 1400),
                                       screenshot=LIVE_SCREENSHOT))
        after = api_attempts(cluster, live_dashboard.RUNNING_JOB)
        _, _, status = cluster.get("/api/status")
    assert LIVE_SCREENSHOT.stat().st_size > 10000
    assert page.find("body").attrs["data-state"] == "live"
    workers = [f"localhost:{worker['port']}" for worker in status["workers"]]
    rows = [row for row in page.find(id="workers").find_all("tr")
            if "data-worker" in row.attrs]
    assert [row.attrs["data-worker"] for row in rows] == workers
    assert [row.find(cls="badge").text() for row in rows] == ["busy"] * 2
    running = page.find(id="running").find(
        data_job_id=str(live_dashboard.RUNNING_JOB))
    assert "map stage" in running.text()
    assert [row.attrs["data-job-id"] for row in
            page.find(id="queue").find_all("tr")
            if "data-job-id" in row.attrs] == [str(live_dashboard.QUEUED_JOB)]
    assert [row.attrs["data-job-id"] for row in
            page.find(id="recent").find_all("tr")
            if "data-job-id" in row.attrs] == [
                str(live_dashboard.FINISHED_JOB)]
    assert page.find(id="job-heading").text() == \
        f"Timeline of job {live_dashboard.RUNNING_JOB}"
    recent_text = page.find(id="recent").text()
    assert "1 part file" in recent_text
    assert "1 part files" not in recent_text
    assert "1 reduce task" in running.text()
    assert "1 reduce tasks" not in running.text()
    assert before == after, "job 1 changed while the page loaded"
    assert len(before) == 2
    assert drawn_attempts(page) == before
