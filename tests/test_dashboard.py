"""The dashboard's routes: page, static files, JSON API, errors.

`route()` is called directly with the real files of the package's `web/`
directory and a sample source shaped like the Manager's status answers.
The page itself, in a browser, is tested in test_dashboard_page.py.
"""

import html.parser
import json
import pathlib
import re

import pytest

from mapreduce.manager import dashboard
from mapreduce.manager.dashboard import route
from tests.dashboard_sample import FAILED_JOB, RUNNING_JOB, UNKNOWN_JOB

WEB = (pathlib.Path(__file__).resolve().parent.parent / "mapreduce" /
       "manager" / "web")
PAGE_FILES = ("index.html", "dashboard.js", "dashboard.css")
JSON_TYPE = "application/json"


def get(path, source, method="GET"):
    """Return route()'s answer to `method path`."""
    return route(method, path, source)


def json_answer(path, source):
    """Return (status, decoded body) of a GET that must answer JSON."""
    status, content_type, body = get(path, source)
    assert content_type == JSON_TYPE
    return status, json.loads(body.decode("utf-8"))


@pytest.mark.parametrize("path, name, content_type", [
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/index.html", "index.html", "text/html; charset=utf-8"),
    ("/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"),
    ("/dashboard.css", "dashboard.css", "text/css; charset=utf-8"),
])
def test_page_and_static_files(source, path, name, content_type):
    """The page and its files are served byte for byte from web/."""
    assert get(path, source) == (200, content_type,
                                 (WEB / name).read_bytes())
    assert not source.calls, "static files must not ask the Manager"


def test_handler_for_the_http_listener(source):
    """handler_for(source) answers (method, path) like route()."""
    handler = dashboard.handler_for(source)
    assert handler("GET", "/") == route("GET", "/", source)
    assert handler("GET", "/api/jobs/6")[0] == 200
    assert handler("DELETE", "/api/status")[0] == 405


def test_web_directory_holds_exactly_the_served_files():
    """Every file in web/ is served, and nothing else is there."""
    served = {name for name, _ in dashboard.STATIC_FILES.values()}
    assert served == set(PAGE_FILES)
    assert {path.name for path in WEB.iterdir()} == served


def test_status_is_the_sources_status_as_json(source):
    """/api/status answers the source's status() as JSON."""
    status, body = json_answer("/api/status", source)
    assert status == 200
    expected = source.status()
    del body["manager"]["now"], expected["manager"]["now"]
    assert body == expected


def test_job_is_the_sources_job_as_json(source):
    """/api/jobs/<id> answers the source's job(id) as JSON."""
    for job_id in (RUNNING_JOB, FAILED_JOB):
        status, body = json_answer(f"/api/jobs/{job_id}", source)
        assert status == 200
        assert body == source.job(job_id)
        assert ("job", job_id) in source.calls


def test_unknown_job_is_404_json(source):
    """A job the source does not know is 404 with an error message."""
    status, body = json_answer(f"/api/jobs/{UNKNOWN_JOB}", source)
    assert status == 404
    assert str(UNKNOWN_JOB) in body["error"]
    assert source.calls == [("job", UNKNOWN_JOB)]


@pytest.mark.parametrize("job_id", [
    "", "abc", "-1", "+1", "1.5", "1e3", " 1", "1 ", "0x1", "1/2", "1/",
    "%31", "\u0661", "\u00b2", "1" * 19, "9" * 5000])
def test_malformed_job_id_is_400_json(source, job_id):
    """A job id that is not a plain number is 400; the source is not asked."""
    status, body = json_answer(f"/api/jobs/{job_id}", source)
    assert status == 400
    assert body["error"].startswith("not a job id")
    assert not source.calls


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), object(),
                                       {1, 2}, b"bytes"])
def test_data_that_is_not_json_is_a_logged_500(source, caplog, bad_value):
    """Status data JSON cannot carry is a clear 500, logged, not a crash."""
    source.summaries[RUNNING_JOB]["elapsed"] = bad_value
    source.details[RUNNING_JOB]["elapsed"] = bad_value
    for path in ("/api/status", f"/api/jobs/{RUNNING_JOB}"):
        caplog.clear()
        status, body = json_answer(path, source)
        assert status == 500
        assert body["error"].startswith("cannot encode the answer as JSON")
        assert [record.levelname for record in caplog.records] == ["ERROR"]
        assert path in caplog.records[0].getMessage()


def test_job_id_with_leading_zeros_is_the_number(source):
    """/api/jobs/007 is job 7."""
    status, body = json_answer("/api/jobs/007", source)
    assert status == 200 and body["job_id"] == RUNNING_JOB


def test_query_string_is_ignored(source):
    """A query string or fragment does not change the answer."""
    assert get("/api/status?t=1", source)[0] == 200
    assert get("/dashboard.js?v=2#x", source) == get("/dashboard.js",
                                                     source)
    assert get(f"/api/jobs/{RUNNING_JOB}?x", source)[0] == 200


@pytest.mark.parametrize("path", [
    "/../pyproject.toml", "/../../etc/passwd", "/..%2f..%2fetc%2fpasswd",
    "/%2e%2e/dashboard.py", "/web/index.html", "/dashboard.py",
    "/__init__.py", "/manager.py", "//dashboard.css", "/./dashboard.css",
    "/dashboard.css/", "/DASHBOARD.CSS", "/index.htm", "/favicon.ico",
    "/api", "/api/", "/api/status/", "/api/status/x", "/api/jobs",
    "/api/workers", "", "*", "dashboard.js", "/\x00", "/\u00e9t\u00e9"])
def test_anything_else_is_404(source, path):
    """Only the known paths are answered: no file outside the list."""
    status, content_type, body = get(path, source)
    assert status == 404
    if path.startswith("/api/"):
        assert content_type == JSON_TYPE
        assert "error" in json.loads(body)
    else:
        assert content_type == "text/plain; charset=utf-8"
    assert not source.calls


@pytest.mark.parametrize("method", [
    "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "get",
    "Get", ""])
@pytest.mark.parametrize("path", ["/", "/api/status", "/api/jobs/7"])
def test_other_methods_are_405(source, method, path):
    """Only GET and HEAD are answered; the source is never asked."""
    status, content_type, body = get(path, source, method)
    assert status == 405
    if path.startswith("/api/"):
        assert content_type == JSON_TYPE
        assert "GET" in json.loads(body)["error"]
    assert not source.calls


@pytest.mark.parametrize("path", ["/", "/dashboard.css", "/api/status",
                                  "/api/jobs/7", "/api/jobs/99",
                                  "/api/jobs/x", "/nothing"])
def test_head_is_answered_like_get(source, path):
    """HEAD gets GET's answer (the listener leaves out the body)."""
    head = get(path, source, "HEAD")
    answer = get(path, source)
    if path == "/api/status":  # the snapshot's clock moves on
        head, answer = head[:2], answer[:2]
    assert head == answer


class LinkCollector(html.parser.HTMLParser):
    """Collect every src and href of a page."""

    def __init__(self):
        """Start with no links."""
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        """Remember the element's src and href values."""
        self.links += [value for name, value in attrs
                       if name in ("src", "href")]


def test_page_uses_only_its_own_files(source):
    """The page loads only files that are served; nothing from elsewhere."""
    collector = LinkCollector()
    collector.feed((WEB / "index.html").read_text(encoding="utf-8"))
    local = [link for link in collector.links
             if not link.startswith(("data:", "#"))]
    assert "dashboard.js" in local and "dashboard.css" in local
    for link in local:
        assert not re.match(r"^[a-z]+:|^//", link), link
        assert get("/" + link, source)[0] == 200, link
    for name in PAGE_FILES:
        text = (WEB / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://|@import|url\(", text), name


def test_script_never_writes_markup():
    """The script builds the page from elements and text only."""
    script = (WEB / "dashboard.js").read_text(encoding="utf-8")
    for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML",
                   "document.write", "eval(", "new Function", "srcdoc",
                   "createContextualFragment", "DOMParser"):
        assert unsafe not in script, unsafe


def test_non_ascii_text_comes_back_whole(source):
    """Paths with non-ASCII characters survive the JSON encoding."""
    path = "/d\u00e4ten/\u6587\U0001f600"
    source.summaries[RUNNING_JOB]["input_directory"] = path
    _, _, body = get("/api/status", source)
    assert json.loads(body)["running"]["input_directory"] == path
