/*
 * The MapReduce dashboard: polls the Manager's JSON API about once a
 * second and draws the Workers, the jobs and a job's task timeline.
 *
 * Every string that comes from the Manager (paths, executable names,
 * reasons, stderr) reaches the page through textContent or an attribute
 * set by property, never as HTML, so nothing a user submits can become
 * markup or script here. The data's shape is described in the README
 * ("Dashboard") and in the Manager's status code.
 */
"use strict";

(function dashboard() {
  const POLL_INTERVAL_MS = 1000;
  const REQUEST_TIMEOUT_MS = 4000;
  const MAX_EVENTS_SHOWN = 200;

  const STATUS_URL = "api/status";
  const JOB_URL = "api/jobs/";

  const WORKER_STATES = {
    joining: "registering with the Manager",
    ready: "idle, waiting for a task",
    busy: "running a task",
    dead: "missed its heartbeats or could not be reached",
  };
  const JOB_STATES = {
    queued: "waiting for its turn",
    running: "running now",
    finished: "finished: the output directory is complete",
    failed: "failed: see the reason below",
    rejected: "rejected before it started: see the reason",
    abandoned: "abandoned: the Manager shut down before it ended",
  };
  const ATTEMPT_CLASSES = {
    failed: "bar-failed",
    taken_back: "bar-taken-back",
  };
  const LEGEND = [
    ["bar-map", "map task"],
    ["bar-reduce", "reduce task"],
    ["bar-failed", "failed attempt"],
    ["bar-taken-back", "taken back (its Worker died)"],
    ["bar-map bar-running", "still running"],
  ];

  const view = {
    status: null,        // last /api/status answer
    job: null,           // last /api/jobs/<id> answer for the shown job
    missingJob: null,    // id of a shown job the Manager does not know
    receivedAt: 0,       // local clock (s) when `status` arrived
    reachable: null,     // null before the first answer
    unreachableSince: null,
    lastError: "",
    renders: 0,
    openDetails: new Set(),
    drawn: {},           // section -> JSON of what it shows now
  };
  let pollTimer = null;
  let polling = false;
  let pollAgain = false;

  /* ---------- small DOM helpers (text only, never HTML) ---------- */

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function append(parent, ...children) {
    for (const child of children) {
      if (child === null || child === undefined) {
        continue;
      }
      parent.appendChild(child instanceof Node ? child :
        document.createTextNode(String(child)));
    }
    return parent;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function badge(kind, word, explanation) {
    const node = el("span", "badge " + kind + "-" + cssWord(word),
      word === null || word === undefined ? "unknown" : word);
    if (explanation) {
      node.title = explanation;
    }
    return node;
  }

  function cssWord(word) {
    return String(word).toLowerCase().replace(/[^a-z0-9]+/g, "-");
  }

  function table(headings, rows, className) {
    const node = el("table", className || "grid");
    const head = el("tr");
    for (const heading of headings) {
      append(head, el("th", null, heading));
    }
    append(node, append(el("thead"), head));
    const body = el("tbody");
    for (const row of rows) {
      append(body, row);
    }
    return append(node, body);
  }

  function cell(...content) {
    return append(el("td"), ...content);
  }

  function jobLink(jobId) {
    const link = el("a", "job-link", "Job " + jobId);
    link.href = "#job=" + encodeURIComponent(String(jobId));
    return link;
  }

  function rememberedDetails(key, summaryText, content, openByDefault) {
    const details = el("details");
    details.open = view.openDetails.has(key) ||
      (openByDefault && !view.openDetails.has("closed:" + key));
    details.addEventListener("toggle", () => {
      view.openDetails.delete(details.open ? "closed:" + key : key);
      view.openDetails.add(details.open ? key : "closed:" + key);
    });
    return append(details, el("summary", null, summaryText), content);
  }

  /* ---------- formatting ---------- */

  // "1 part file", "3 part files": `noun` in the singular.
  function count(number, noun) {
    return number + " " + noun + (number === 1 ? "" : "s");
  }

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function duration(value) {
    if (!isNumber(value)) {
      return "\u2013";
    }
    const seconds = Math.max(0, value);
    if (seconds < 10) {
      return seconds.toFixed(1) + " s";
    }
    if (seconds < 60) {
      return Math.round(seconds) + " s";
    }
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) {
      return minutes + " min " + Math.floor(seconds - minutes * 60) + " s";
    }
    const hours = Math.floor(minutes / 60);
    return hours + " h " + (minutes - hours * 60) + " min";
  }

  function clockTime(epochSeconds) {
    if (!isNumber(epochSeconds)) {
      return "\u2013";
    }
    const date = new Date(epochSeconds * 1000);
    const pad = (number) => String(number).padStart(2, "0");
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" +
      pad(date.getSeconds());
  }

  function taskName(task) {
    return task.kind + " task " + task.task_id;
  }

  /* The Manager's clock now: its last `now` plus the time since, or
     just its last `now` while it does not answer (nothing grows then). */
  function managerNow() {
    const manager = view.status && view.status.manager;
    if (!manager || !isNumber(manager.now)) {
      return Date.now() / 1000;
    }
    if (!view.reachable) {
      return manager.now;
    }
    return manager.now + Math.max(0, Date.now() / 1000 - view.receivedAt);
  }

  /* ---------- progress bars ---------- */

  function progress(label, counts) {
    const done = counts && isNumber(counts.done) ? counts.done : 0;
    const total = counts && isNumber(counts.total) ? counts.total : null;
    const bar = el("div", "progress");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", label);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuenow", String(done));
    const fill = el("div", "progress-fill");
    if (total !== null) {
      bar.setAttribute("aria-valuemax", String(total));
      const share = total > 0 ? Math.min(1, done / total) : 1;
      fill.style.width = (share * 100).toFixed(1) + "%";
      if (total > 0 && done >= total) {
        fill.classList.add("progress-complete");
      }
    } else {
      fill.style.width = "0%";
    }
    const text = total === null ? done + " done (total not known yet)" :
      done + " / " + count(total, "task");
    append(bar, fill, el("span", "progress-text", text));
    return append(el("div", "progress-row"),
      el("span", "progress-label", label), bar);
  }

  /* ---------- sections ---------- */

  function renderManagerInfo(status) {
    const manager = status.manager || {};
    const info = byId("manager-info");
    const uptime = isNumber(manager.started_at) && isNumber(manager.now) ?
      duration(manager.now - manager.started_at) : "\u2013";
    info.replaceChildren(
      "Manager ", el("code", null, manager.host + ":" + manager.port),
      " \u00b7 up " + uptime + " \u00b7 shared directory ",
      el("code", null, manager.shared_dir));
  }

  function renderConnection() {
    const node = byId("connection");
    const banner = byId("banner");
    document.body.dataset.state = view.reachable ? "live" : "unreachable";
    document.body.classList.toggle("stale", !view.reachable);
    banner.hidden = Boolean(view.reachable);
    if (view.reachable) {
      node.className = "connection connection-live";
      node.textContent = "Live \u00b7 updated " +
        clockTime(Date.now() / 1000);
      return;
    }
    node.className = "connection connection-down";
    node.textContent = "Manager not reachable";
    banner.textContent = "Manager not reachable since " +
      clockTime(view.unreachableSince) +
      (view.lastError ? " (" + view.lastError + ")" : "") + ". " +
      (view.status ? "What you see is the last state it reported, at " +
        clockTime(view.status.manager && view.status.manager.now) + ". " :
        "") + "The page keeps asking every second.";
  }

  function renderWorkers(workers) {
    const target = byId("workers");
    if (!workers.length) {
      target.replaceChildren(el("p", "empty",
        "No Worker has registered yet. Start one with mapreduce-worker."));
      return;
    }
    const rows = workers.map((worker) => {
      const name = worker.host + ":" + worker.port;
      const row = el("tr");
      row.dataset.worker = name;
      const task = worker.task ?
        append(el("span"), taskName(worker.task) + " of ",
          jobLink(worker.task.job_id)) :
        el("span", "muted", worker.state === "dead" ? "\u2013" : "idle");
      const age = isNumber(worker.last_heartbeat_age) ?
        duration(worker.last_heartbeat_age) + " ago" : "\u2013";
      append(row, cell(el("code", null, name)),
        cell(badge("state", worker.state, WORKER_STATES[worker.state])),
        cell(task), cell(age),
        append(el("td", "number"), String(worker.tasks_done)));
      return row;
    });
    target.replaceChildren(table(
      ["Worker", "State", "Current task", "Last heartbeat", "Tasks done"],
      rows, "grid workers-table"));
  }

  /* A job's counters (group -> name -> sum) as a table, or null. */
  function counterTable(counters) {
    const rows = [];
    Object.keys(counters || {}).sort().forEach((group) => {
      const names = counters[group] || {};
      Object.keys(names).sort().forEach((name) => {
        const row = el("tr");
        row.dataset.counter = group + "." + name;
        append(row, cell(el("code", null, group)),
          cell(el("code", null, name)),
          append(el("td", "number"), String(names[name])));
        rows.push(row);
      });
    });
    return rows.length ?
      table(["Group", "Counter", "Sum"], rows, "grid counters") : null;
  }

  function codes(list) {
    const span = el("span");
    list.forEach((item, index) => {
      append(span, index ? ", " : null, el("code", null, String(item)));
    });
    return span;
  }

  function jobFacts(job) {
    const facts = el("dl", "facts");
    const add = (term, ...value) => {
      append(facts, el("dt", null, term), append(el("dd"), ...value));
    };
    const streaming = job.streaming;
    add("Mapper", el("code", null, job.mapper_executable),
      " \u00d7 " + count(job.num_mappers, "map task"));
    if (job.num_reducers === 0) {
      add("Reducer", "none: a map-only job");
    } else {
      add("Reducer", el("code", null, job.reducer_executable),
        (streaming ? " \u00d7 at most " : " \u00d7 ") +
        count(job.num_reducers, "reduce task"));
    }
    if (streaming && streaming.combiner) {
      add("Combiner", el("code", null, streaming.combiner));
    }
    if (streaming && streaming.partitioner) {
      add("Partitioner", el("code", null, streaming.partitioner));
    }
    add("Input", streaming && (streaming.input_paths || []).length ?
      codes(streaming.input_paths) : el("code", null, job.input_directory));
    add("Output", el("code", null, job.output_directory));
    add("Submitted", clockTime(job.submitted_at));
    if (isNumber(job.started_at)) {
      add("Started", clockTime(job.started_at));
    }
    if (isNumber(job.ended_at)) {
      add("Ended", clockTime(job.ended_at));
    }
    add("Elapsed", duration(job.elapsed));
    const counters = counterTable(job.counters);
    if (counters) {
      add("Counters", counters);
    }
    return facts;
  }

  function failure(job, key) {
    if (!job.reason && !job.stderr_tail) {
      return null;
    }
    const box = el("div", "failure");
    if (job.reason) {
      append(box, append(el("p", "reason"), el("strong", null, "Reason: "),
        String(job.reason)));
    }
    if (job.stderr_tail) {
      append(box, rememberedDetails(key,
        "stderr of the failing executable (last lines)",
        el("pre", "stderr", job.stderr_tail), true));
    }
    return box;
  }

  function jobTitle(job) {
    const title = append(el("div", "job-title"), jobLink(job.job_id),
      badge("state", job.state, JOB_STATES[job.state]));
    if (job.stage) {
      append(title, el("span", "stage", job.stage + " stage"));
    }
    return title;
  }

  function renderRunning(status) {
    const target = byId("running");
    const job = status.running;
    if (!job) {
      const live = (status.workers || []).filter(
        (worker) => worker.state !== "dead").length;
      let text = "No job is running.";
      if ((status.queue || []).length && !live) {
        text += " Jobs are queued, but no Worker is alive to run them.";
      }
      target.replaceChildren(el("p", "empty", text));
      return;
    }
    const box = el("div", "running-job");
    box.dataset.jobId = String(job.job_id);
    append(box, jobTitle(job), progress("Map", job.map),
      progress("Reduce", job.reduce), jobFacts(job));
    target.replaceChildren(box);
  }

  function markShown(row, jobId) {
    row.dataset.jobId = String(jobId);
    if (view.job && view.job.job_id === jobId) {
      row.classList.add("shown");
    }
    return row;
  }

  function renderQueue(queue) {
    const target = byId("queue");
    if (!queue.length) {
      target.replaceChildren(el("p", "empty", "No job is waiting."));
      return;
    }
    const rows = queue.map((job, index) => {
      const row = markShown(el("tr"), job.job_id);
      append(row, append(el("td", "number"), String(index + 1)),
        cell(jobLink(job.job_id)),
        cell(el("code", null, job.mapper_executable)),
        cell(el("code", null, job.reducer_executable)),
        cell(el("code", null, job.input_directory)),
        cell(el("code", null, job.output_directory)),
        cell(job.num_mappers + " / " + job.num_reducers),
        cell(clockTime(job.submitted_at)));
      return row;
    });
    target.replaceChildren(table(["#", "Job", "Mapper", "Reducer", "Input",
      "Output", "Maps / reduces", "Submitted"], rows));
  }

  function counts(part) {
    if (!part) {
      return "\u2013";
    }
    return part.done + " / " + (isNumber(part.total) ? part.total : "?");
  }

  function renderRecent(recent) {
    const target = byId("recent");
    if (!recent.length) {
      target.replaceChildren(el("p", "empty", "No job has ended yet."));
      return;
    }
    const rows = [];
    for (const job of recent) {
      const row = markShown(el("tr"), job.job_id);
      const reason = job.reason ? String(job.reason) :
        job.state === "finished" ?
          count((job.part_files || []).length, "part file") : "";
      append(row, cell(jobLink(job.job_id)),
        cell(badge("state", job.state, JOB_STATES[job.state])),
        cell(counts(job.map)), cell(counts(job.reduce)),
        cell(duration(job.elapsed)), cell(clockTime(job.ended_at)),
        cell(el("span", "reason-text", reason)));
      rows.push(row);
      if (job.stderr_tail) {
        const extra = el("tr", "stderr-row");
        const wide = el("td");
        wide.colSpan = 7;
        append(wide, rememberedDetails("recent:" + job.job_id,
          "stderr of the failing executable",
          el("pre", "stderr", job.stderr_tail), false));
        rows.push(append(extra, wide));
      }
    }
    target.replaceChildren(table(["Job", "Outcome", "Map", "Reduce",
      "Duration", "Ended", "Reason / result"], rows));
  }

  /* ---------- the timeline of one job ---------- */

  function tickStep(span) {
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
      900, 1800, 3600, 7200, 14400, 28800, 86400];
    for (const step of steps) {
      if (span / step <= 8) {
        return step;
      }
    }
    return span / 8;
  }

  function timelineRows(job, attempts) {
    const status = view.status || {};
    const known = (status.workers || []).map((w) => w.host + ":" + w.port);
    const rows = new Map();
    for (const name of known) {
      rows.set(name, []);
    }
    for (const attempt of attempts) {
      if (!rows.has(attempt.worker)) {
        rows.set(attempt.worker, []);
      }
      rows.get(attempt.worker).push(attempt);
    }
    const states = new Map((status.workers || []).map(
      (w) => [w.host + ":" + w.port, w.state]));
    const running = job.state === "running";
    const shown = [];
    for (const [name, list] of rows) {
      // Workers that did nothing for this job appear only while it runs,
      // and only when alive: they may still get a task.
      if (list.length || (running && states.get(name) !== "dead")) {
        shown.push([name, list, states.get(name)]);
      }
    }
    return shown;
  }

  function bar(attempt, start, span, now) {
    const begin = isNumber(attempt.started_at) ? attempt.started_at : start;
    const running = attempt.outcome === "running" ||
      !isNumber(attempt.ended_at);
    const end = running ? Math.max(now, begin) : attempt.ended_at;
    const kindClass = attempt.kind === "reduce" ? "bar-reduce" : "bar-map";
    const node = el("div", "bar " +
      (ATTEMPT_CLASSES[attempt.outcome] || kindClass));
    if (running) {
      node.classList.add("bar-running");
    }
    node.dataset.worker = String(attempt.worker);
    node.dataset.kind = String(attempt.kind);
    node.dataset.taskId = String(attempt.task_id);
    node.dataset.outcome = String(attempt.outcome);
    node.style.left = ((begin - start) / span * 100).toFixed(3) + "%";
    node.style.width = (Math.max(0, end - begin) / span * 100).toFixed(3) +
      "%";
    const outcome = String(attempt.outcome).replace("_", " ");
    node.title = taskName(attempt) + " on " + attempt.worker + ": " +
      outcome + ", " + duration(end - begin) + " (from +" +
      duration(begin - start) + ")";
    append(node, el("span", "bar-label",
      (attempt.kind === "reduce" ? "r" : "m") + attempt.task_id));
    return node;
  }

  function timeline(job) {
    const attempts = Array.isArray(job.attempts) ? job.attempts : [];
    const now = managerNow();
    const starts = attempts.map((a) => a.started_at).filter(isNumber);
    let start = isNumber(job.started_at) ? job.started_at :
      starts.length ? Math.min(...starts) : job.submitted_at;
    if (starts.length) {
      start = Math.min(start, ...starts);
    }
    const ends = attempts.map((a) => a.ended_at).filter(isNumber);
    let end = isNumber(job.ended_at) ? job.ended_at : now;
    if (ends.length) {
      end = Math.max(end, ...ends);
    }
    const span = Math.max(end - start, 1);

    const box = el("div", "timeline");
    box.id = "timeline";
    const axis = append(el("div", "tl-row tl-axis-row"),
      el("div", "tl-label", "time since start"));
    const ticks = el("div", "tl-track tl-axis");
    const step = tickStep(span);
    for (let t = 0; t <= span + 1e-9; t += step) {
      const tick = el("span", "tl-tick", duration(t).replace(".0 s", " s"));
      tick.style.left = (t / span * 100).toFixed(3) + "%";
      append(ticks, tick);
    }
    append(box, append(axis, ticks));

    const rows = timelineRows(job, attempts);
    for (const [name, list, state] of rows) {
      const row = el("div", "tl-row");
      row.dataset.worker = name;
      const label = append(el("div", "tl-label"), el("code", null, name));
      label.title = name;
      if (state === "dead") {
        append(label, " ", badge("state", "dead", WORKER_STATES.dead));
      }
      const track = el("div", "tl-track");
      for (const attempt of list) {
        append(track, bar(attempt, start, span, now));
      }
      append(box, append(row, label, track));
    }
    if (!attempts.length) {
      append(box, el("p", "empty", job.state === "queued" ?
        "The job is queued: no task has started yet." :
        "No task attempt was recorded for this job."));
    }
    return box;
  }

  function legend() {
    const box = el("div", "legend");
    for (const [className, text] of LEGEND) {
      append(box, append(el("span", "legend-item"),
        el("span", "swatch " + className), text));
    }
    return box;
  }

  function events(job) {
    const list = Array.isArray(job.events) ? job.events : [];
    if (!list.length) {
      return null;
    }
    const shown = list.slice(-MAX_EVENTS_SHOWN).reverse();
    const rows = shown.map((event) => append(el("tr"),
      cell(clockTime(event.time)), cell(el("code", null, event.kind)),
      cell(String(event.message))));
    const title = "Events (" + list.length + ")" +
      (list.length > shown.length ? ", newest " + shown.length + " shown" :
        "") + ", newest first";
    return rememberedDetails("events:" + job.job_id, title,
      table(["Time", "Event", "What happened"], rows, "grid events"),
      false);
  }

  function renderJob() {
    const target = byId("job");
    const heading = byId("job-heading");
    const job = view.job;
    if (!job) {
      heading.textContent = "Timeline";
      target.replaceChildren(el("p", "empty", view.missingJob !== null ?
        "The Manager does not know job " + view.missingJob +
        " (any more): it keeps only the most recent jobs." :
        "No job yet: submit one with mapreduce-submit."));
      return;
    }
    heading.replaceChildren("Timeline of job " + job.job_id);
    if (selectedJobId() !== null) {
      const back = el("a", "back-link", "show the running or latest job");
      back.href = "#";
      append(heading, " ", back);
    }
    const box = el("div", "job-detail");
    box.dataset.jobId = String(job.job_id);
    // The running job's progress and facts are already shown above.
    const running = view.status && view.status.running;
    const isRunning = Boolean(running) && running.job_id === job.job_id;
    append(box, jobTitle(job));
    if (!isRunning && job.state !== "queued" && job.state !== "rejected") {
      append(box, progress("Map", job.map), progress("Reduce", job.reduce));
    }
    append(box, failure(job, "job:" + job.job_id), legend(), timeline(job),
      isRunning ? null : jobFacts(job));
    if ((job.part_files || []).length) {
      append(box, append(el("p", "part-files"), "Output files: ",
        el("code", null, job.part_files.join(", "))));
    }
    append(box, events(job));
    target.replaceChildren(box);
  }

  /* Redraw a section only when its data changed, so that a student can
     select text or open details in it between polls. */
  function drawIfChanged(section, data, draw) {
    const key = JSON.stringify([data, view.job && view.job.job_id]);
    if (view.drawn[section] === key) {
      return;
    }
    view.drawn[section] = key;
    draw(data);
  }

  function render() {
    renderConnection();
    const status = view.status;
    if (status) {
      renderManagerInfo(status);
      renderRunning(status);
      renderWorkers(Array.isArray(status.workers) ? status.workers : []);
      drawIfChanged("queue", Array.isArray(status.queue) ? status.queue : [],
        renderQueue);
      drawIfChanged("recent",
        Array.isArray(status.recent) ? status.recent : [], renderRecent);
      renderJob();
    }
    view.renders += 1;
    document.body.dataset.renders = String(view.renders);
  }

  /* ---------- polling ---------- */

  function selectedJobId() {
    const match = /^#job=([0-9]+)$/.exec(window.location.hash);
    return match ? Number(match[1]) : null;
  }

  function shownJobId(status) {
    const chosen = selectedJobId();
    if (chosen !== null) {
      return chosen;
    }
    if (status.running) {
      return status.running.job_id;
    }
    const recent = Array.isArray(status.recent) ? status.recent : [];
    return recent.length ? recent[0].job_id : null;
  }

  async function fetchJson(url) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    try {
      const response = await fetch(url, {
        cache: "no-store",
        signal: controller.signal,
      });
      let body = null;
      try {
        body = await response.json();
      } catch (error) {
        body = null;
      }
      return {code: response.status, body: body};
    } finally {
      clearTimeout(timer);
    }
  }

  function isObject(value) {
    return value !== null && typeof value === "object" &&
      !Array.isArray(value);
  }

  async function fetchState() {
    const status = await fetchJson(STATUS_URL);
    if (status.code !== 200 || !isObject(status.body)) {
      throw new Error("answer " + status.code + " to " + STATUS_URL);
    }
    const jobId = shownJobId(status.body);
    let job = null;
    let missing = null;
    if (jobId !== null) {
      const answer = await fetchJson(JOB_URL + jobId);
      if (answer.code === 200 && isObject(answer.body)) {
        job = answer.body;
      } else if (answer.code === 404) {
        missing = jobId;
      } else {
        throw new Error("answer " + answer.code + " to " + JOB_URL + jobId);
      }
    }
    view.status = status.body;
    view.receivedAt = Date.now() / 1000;
    view.job = job;
    view.missingJob = missing;
  }

  function describeFailure(error) {
    if (error && error.name === "AbortError") {
      return "no answer within " + REQUEST_TIMEOUT_MS / 1000 + " s";
    }
    if (error instanceof TypeError) {
      return "no connection";
    }
    return String(error && error.message || error);
  }

  async function poll() {
    clearTimeout(pollTimer);
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    try {
      await fetchState();
      view.reachable = true;
      view.unreachableSince = null;
      view.lastError = "";
    } catch (error) {
      if (view.reachable !== false) {
        view.unreachableSince = Date.now() / 1000;
      }
      view.reachable = false;
      view.lastError = describeFailure(error);
    }
    try {
      render();
    } catch (error) {
      console.error("dashboard: could not draw the page", error);
    }
    polling = false;
    if (pollAgain) {
      pollAgain = false;
      poll();
    } else {
      pollTimer = setTimeout(poll, POLL_INTERVAL_MS);
    }
  }

  window.addEventListener("hashchange", () => {
    poll();
  });
  poll();
}());
