"""The dashboard's HTTP routes: the page, its static files and the JSON API.

`route(method, path, source)` maps one request to one answer
`(status, content_type, body)` and does nothing else: no sockets (those are
the reactor's), no state (that is the Manager's). `source` gives the data:

- `source.status()` returns the `/api/status` object,
- `source.job(job_id)` returns the `/api/jobs/<id>` object, or None for a
  job the Manager does not know (or no longer remembers).

Only the files named in `STATIC_FILES` are ever served, read from this
package's `web/` directory, so no request path can reach any other file.
`handler_for(source)` gives the `handler(method, path)` that the
reactor's HTTP listener calls.
"""

import functools
import http
import importlib.resources
import json
import logging
import re

LOG = logging.getLogger(__name__)

WEB_DIRECTORY = "web"

# Request path -> (file in WEB_DIRECTORY, content type).
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
API_PREFIX = "/api/"
STATUS_PATH = "/api/status"
JOB_PREFIX = "/api/jobs/"
# A job id is a plain decimal number; at most 18 digits, so that int()
# is cheap on any request.
JOB_ID_PATTERN = re.compile(r"[0-9]{1,18}")
ALLOWED_METHODS = ("GET", "HEAD")


@functools.lru_cache(maxsize=None)
def static_file(name):
    """Return the bytes of the dashboard file `name` (read once, kept)."""
    return (importlib.resources.files(__package__)
            .joinpath(WEB_DIRECTORY).joinpath(name).read_bytes())


def json_body(value):
    """Encode `value` as the compact UTF-8 JSON the API answers with."""
    return json.dumps(value, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def json_answer(path, value):
    """Answer 200 with `value` as JSON; 500 if it is not valid JSON data.

    Data the page could not parse (NaN, infinity, objects JSON does not
    know) is a bug on the Manager's side: it is logged, and the page gets
    a clear error instead of a broken document.
    """
    try:
        return 200, JSON_TYPE, json_body(value)
    except (TypeError, ValueError) as exc:
        LOG.error("Dashboard: cannot answer %s as JSON: %s", path, exc)
        return error(500, path, f"cannot encode the answer as JSON: {exc}")


def error(status, path, message):
    """Answer with an error: JSON under /api/, plain text elsewhere."""
    if path.startswith(API_PREFIX):
        return status, JSON_TYPE, json_body({"error": message})
    phrase = http.HTTPStatus(status).phrase
    return status, TEXT_TYPE, f"{status} {phrase}: {message}\n".encode()


def request_path(target):
    """Return the path of a request target, without query or fragment."""
    return target.split("?", 1)[0].split("#", 1)[0]


def answer_get(path, source):
    """Answer a GET of `path` (already without its query string)."""
    if path in STATIC_FILES:
        name, content_type = STATIC_FILES[path]
        return 200, content_type, static_file(name)
    if path == STATUS_PATH:
        return json_answer(path, source.status())
    if path.startswith(JOB_PREFIX):
        text = path[len(JOB_PREFIX):]
        if not JOB_ID_PATTERN.fullmatch(text):
            return error(400, path, f"not a job id: {text!r}")
        job = source.job(int(text))
        if job is None:
            return error(404, path, f"no job {int(text)} is known")
        return json_answer(path, job)
    return error(404, path, "no such page")


def route(method, target, source):
    """Answer one HTTP request: return `(status, content_type, body)`.

    `method` is the request's method, `target` its path as sent (a query
    string is ignored). GET and HEAD get the same answer (the listener
    sends no body for HEAD, but the length of this one); any other method
    gets 405. JSON answers have the content type `application/json`.
    """
    path = request_path(target)
    if method not in ALLOWED_METHODS:
        return error(405, path, "only GET and HEAD are allowed")
    return answer_get(path, source)


def url(host, port):
    """Return the address of the dashboard served on `host:port`."""
    return f"http://{host}:{port}/"


def handler_for(source):
    """Return `handler(method, path)` answering from `source`.

    This is the handler shape of the reactor's HTTP listener. The page's
    files are read here, once, so that a broken installation shows when
    the Manager starts, not at the first request, and the loop never
    waits for the disk afterwards.
    """
    for name, _ in STATIC_FILES.values():
        static_file(name)

    def handler(method, target):
        """Answer one request of the dashboard."""
        return route(method, target, source)

    return handler
