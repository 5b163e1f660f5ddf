"""A real headless browser for the tests, and what they need around it.

- `Chromium` runs Debian's `chromium` headless on one URL: it lets the
  page's scripts run for a while of virtual time, then gives the DOM as
  the scripts left it and, if asked, saves a screenshot. Every run gets a
  fresh profile directory and its own process group, removed and killed
  afterwards. It takes any URL, so it can be pointed at a real Manager.
- `chromium_or_skip()` finds the browser; where it is missing the test is
  skipped, unless `MAPREDUCE_REQUIRE_CHROMIUM` is set (CI installs
  chromium and sets it, so there a missing browser fails).
  `skip_without_chromium(whole_module=True)` at the top of a test module
  does the same for all its tests, in one line.
- `StandInServer` is a small stdlib HTTP server in a thread that answers
  every request through `handler(method, path)`, the same handler shape
  as the reactor's HTTP listener.
- `parse_html()` turns the dumped DOM into a tree of `Element`s.
"""

import html.parser
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

REQUIRE_VARIABLE = "MAPREDUCE_REQUIRE_CHROMIUM"
EXECUTABLE_VARIABLE = "MAPREDUCE_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome",
              "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio")
RUN_TIMEOUT = 90.0  # s for one page load, on a busy machine
VOID_ELEMENTS = frozenset((
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link",
    "meta", "source", "track", "wbr"))


def find_chromium():
    """Return the path of a chromium executable, or None."""
    chosen = os.environ.get(EXECUTABLE_VARIABLE)
    if chosen:
        return shutil.which(chosen)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def skip_without_chromium(whole_module=False):
    """Skip the test (or the whole module, in one line) without chromium.

    Where `MAPREDUCE_REQUIRE_CHROMIUM` is set, a missing chromium fails
    instead. Returns the path of the executable.
    """
    executable = find_chromium()
    if executable is None:
        message = ("chromium not found: install it (apt-get install "
                   "chromium) to run the browser tests")
        if os.environ.get(REQUIRE_VARIABLE):
            pytest.fail(f"{message}; {REQUIRE_VARIABLE} is set",
                        pytrace=False)
        pytest.skip(message, allow_module_level=whole_module)
    return executable


def chromium_or_skip(scratch):
    """Return a `Chromium` keeping its profiles in `scratch`, or skip."""
    return Chromium(skip_without_chromium(), scratch)


class Chromium:
    """Run a headless chromium on one page at a time."""

    def __init__(self, executable, scratch):
        """Use the browser at `executable`, with profiles under `scratch`."""
        self.executable = executable
        self.scratch = scratch

    def load(self, url, budget_ms=4000, window=(1400, 1000),
             screenshot=None):
        """Load `url`, run its scripts for `budget_ms`, return the DOM.

        The time is virtual: chromium runs timers as fast as it can while
        nothing else is pending, so a page that polls once a second has
        polled about budget_ms / 1000 times when the DOM is taken. With
        `screenshot` (a path), a PNG of the window is saved there too.
        """
        actions = ["--dump-dom"]
        if screenshot is not None:
            actions.append(f"--screenshot={screenshot}")
        options = [f"--virtual-time-budget={budget_ms}",
                   f"--window-size={window[0]},{window[1]}"]
        return self.run(options + actions + [url])

    def run(self, arguments):
        """Run chromium with `arguments` after the usual flags; give stdout.

        Fails the test with the end of chromium's stderr when it does not
        exit with 0 in time. Whatever it started is killed afterwards.
        """
        profile = tempfile.mkdtemp(prefix="chromium-profile-",
                                   dir=self.scratch)
        command = [self.executable, *FLAGS, f"--user-data-dir={profile}",
                   *arguments]
        with subprocess.Popen(command, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              start_new_session=True) as browser:
            try:
                out, err = browser.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                kill_group(browser.pid)
                out, err = browser.communicate()
                raise AssertionError(
                    f"chromium did not finish within {RUN_TIMEOUT} s:\n"
                    f"{tail(err)}") from None
            finally:
                kill_group(browser.pid)
                shutil.rmtree(profile, ignore_errors=True)
        if browser.returncode != 0:
            raise AssertionError(f"chromium exited with "
                                 f"{browser.returncode}:\n{tail(err)}")
        return out.decode("utf-8", errors="replace")


def kill_group(pid):
    """Kill what is left of the process group that `pid` leads."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tail(data, lines=20):
    """Return the last `lines` lines of chromium's stderr, as text."""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


class StandInServer:
    """A small HTTP server in a thread that answers with `handler`.

    `handler(method, path)` returns `(status, content_type, body)`, or
    None to hang up without answering (as a Manager that went away would).
    `requests` lists every (method, path) received, in order. Use it as a
    context manager; `url` is the address of its root page.
    """

    def __init__(self, handler):
        """Listen on a free loopback port; answer through `handler`."""
        self.handler = handler
        self.requests = []
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), self._request_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name="stand-in-http", daemon=True)

    @property
    def url(self):
        """Return the URL of the server's root page."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def _request_class(self):
        """Return a request handler class that calls `self.handler`."""
        stand_in = self

        class Request(http.server.BaseHTTPRequestHandler):
            """One request: ask the handler, write its answer."""

            def answer(self):
                """Answer the request from the stand-in's handler."""
                stand_in.requests.append((self.command, self.path))
                result = stand_in.handler(self.command, self.path)
                if result is None:
                    self.close_connection = True
                    return
                status, content_type, body = result
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args):
                """Keep the test output clean: requests are in `requests`."""

            do_GET = do_HEAD = do_POST = answer

        return Request

    def __enter__(self):
        """Start serving in the background."""
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class Element:
    """One element of a parsed page: tag, attributes, children, text."""

    def __init__(self, tag, attrs):
        """Make an element with no children yet."""
        self.tag = tag
        self.attrs = {name: value or "" for name, value in attrs}
        self.children = []  # Elements and strings, in document order

    @property
    def classes(self):
        """Return the set of the element's CSS classes."""
        return set(self.attrs.get("class", "").split())

    def text(self):
        """Return the text inside the element, as a browser would show it."""
        return "".join(child if isinstance(child, str) else child.text()
                       for child in self.children)

    def iter(self):
        """Yield this element and every element inside it."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        """Return the elements with this tag, class and attribute values.

        Attribute names are given with `_` for `-`: data_job_id="7".
        """
        wanted = {name.replace("_", "-"): value
                  for name, value in attrs.items()}
        return [element for element in self.iter()
                if (tag is None or element.tag == tag)
                and (cls is None or cls in element.classes)
                and all(element.attrs.get(name) == value
                        for name, value in wanted.items())]

    def find(self, tag=None, cls=None, **attrs):
        """Return the one element that matches, or fail."""
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, (f"expected one <{tag}> {cls or ''} "
                                 f"{attrs}, found {len(found)}")
        return found[0]


class TreeBuilder(html.parser.HTMLParser):
    """Build a tree of `Element`s from a serialized DOM."""

    def __init__(self):
        """Start with an empty document."""
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", [])
        self.open = [self.root]

    def handle_starttag(self, tag, attrs):
        """Open an element (void elements close at once)."""
        element = Element(tag, attrs)
        self.open[-1].children.append(element)
        if tag not in VOID_ELEMENTS:
            self.open.append(element)

    def handle_startendtag(self, tag, attrs):
        """Add an element written as <tag/>."""
        self.open[-1].children.append(Element(tag, attrs))

    def handle_endtag(self, tag):
        """Close the innermost open element with this tag."""
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data):
        """Add text to the current element."""
        self.open[-1].children.append(data)


def parse_html(text):
    """Return the root `Element` of the page `text`."""
    builder = TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def main(arguments):
    """Save a screenshot of a page: `python -m tests.browser URL PNG`.

    For looking at a live dashboard, e.g. a Manager's during a real job.
    """
    if len(arguments) != 2:
        print("usage: python -m tests.browser URL SCREENSHOT.png",
              file=sys.stderr)
        return 2
    executable = find_chromium()
    if executable is None:
        print("chromium not found", file=sys.stderr)
        return 1
    url, screenshot = arguments
    with tempfile.TemporaryDirectory() as scratch:
        page = parse_html(Chromium(executable, scratch).load(
            url, window=(1400, 1400), screenshot=os.path.abspath(screenshot)))
    body = page.find_all("body")
    state = body[0].attrs.get("data-state", "?") if body else "?"
    print(f"saved {screenshot}; page state: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
