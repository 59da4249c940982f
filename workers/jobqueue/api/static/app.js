// The jobs web UI: plain JavaScript over the admin API (/api/v1), no build step.
// Every request carries the token the user pasted; the API (and RBAC) decide what it may do.
"use strict";

const API = "api/v1";
const STATES = ["queued", "scheduled", "started", "finished", "failed"];
const STATE_OF_COUNT = { queued: "queued", scheduled: "scheduled", started: "running", finished: "finished", failed: "failed" };
const PAGE = 25;
const POLL_MS = 2000;
const TOKEN_KEY = "jobqueue-token";

const view = { queue: null, state: "failed", offset: 0, job: null };
let queues = [];
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function say(text, ok = false) {
  const m = $("message");
  m.textContent = text;
  m.className = ok ? "ok" : "";
  m.hidden = !text;
}

async function call(method, path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const reply = await fetch(`${API}${path}`, { method, headers: { Authorization: `Bearer ${token}` } });
  const body = await reply.json().catch(() => ({}));
  if (reply.status === 401) {
    signOut(`signed out: ${body.detail || "the token was refused"}`);
    throw new Error("unauthenticated");
  }
  if (!reply.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${reply.status}: ${detail}`);
  }
  return body;
}

const enc = encodeURIComponent;
const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : "-");
const short = (iso) => (iso ? when(iso).slice(5) : "-");  // MM-DD hh:mm:ss: the year is rarely news

// ---- queues

function renderQueues() {
  const body = $("queues").tBodies[0];
  body.replaceChildren(...queues.map((q) => {
    const c = q.counts;
    const busy = q.workers.reduce((n, w) => n + w.busySlots, 0);
    const slots = q.workers.reduce((n, w) => n + w.slots, 0);
    const name = el("td", {}, el("strong", { text: q.queue }));
    if (q.paused) name.append(" ", el("span", { class: "badge paused", text: "paused" }));
    const toggle = el("button", {
      "data-testid": `toggle-${q.queue}`, text: q.paused ? "Resume" : "Pause",
      onclick: (e) => { e.stopPropagation(); act("POST", `/queues/${enc(q.queue)}/${q.paused ? "resume" : "pause"}`,
        `${q.queue} ${q.paused ? "resumed" : "paused"}`); },
    });
    const row = el("tr", { "data-queue": q.queue, class: q.queue === view.queue ? "selected" : "",
                           onclick: () => select(q.queue) },
      name,
      el("td", { class: "num", "data-count": "queued", text: c.queued }),
      el("td", { class: "num", "data-count": "scheduled", text: c.scheduled }),
      el("td", { class: "num", "data-count": "running", text: c.running }),
      el("td", { class: `num ${c.failed ? "count-failed" : ""}`, "data-count": "failed", text: c.failed }),
      el("td", { class: "num", "data-count": "finished", text: c.finished }),
      el("td", { class: "num", text: `${q.workerCount} (${busy}/${slots} busy)` }),
      el("td", {}, toggle));
    return row;
  }));
  $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function select(queue) {
  if (view.queue !== queue) Object.assign(view, { queue, offset: 0, job: null });
  const q = queues.find((x) => x.queue === queue);
  if (q && !q.counts.failed && view.state === "failed") view.state = "queued";
  location.hash = `#/${enc(queue)}/${view.state}`;
  refresh();
}

// ---- a queue's jobs

async function renderQueue() {
  const q = queues.find((x) => x.queue === view.queue);
  $("queue-panel").hidden = !q;
  if (!q) return;
  $("queue-name").textContent = q.queue;
  $("queue-paused").hidden = !q.paused;
  $("states").replaceChildren(...STATES.map((s) => el("button", {
    class: s === view.state ? "active" : "", "data-state": s,
    text: `${s} (${q.counts[STATE_OF_COUNT[s]]})`,
    onclick: () => { Object.assign(view, { state: s, offset: 0 }); location.hash = `#/${enc(q.queue)}/${s}`; refresh(); },
  })));
  const page = await call("GET", `/queues/${enc(q.queue)}/jobs?state=${view.state}&offset=${view.offset}&limit=${PAGE}`);
  $("jobs").tBodies[0].replaceChildren(...page.jobs.map((j) => el("tr", {
    "data-job": j.id, class: j.id === view.job ? "selected" : "",
    onclick: () => { view.job = j.id; refresh(); },
  },
    el("td", {}, el("code", { text: j.id })),
    el("td", { class: "function", text: j.name }),
    el("td", {}, el("span", { class: `badge ${j.state}`, text: j.state })),
    el("td", { class: "num", text: `${j.attempts}/${j.maxAttempts}` }),
    el("td", { title: when(j.createdAt), text: short(j.createdAt) }),
    el("td", { title: when(j.finishedAt), text: short(j.finishedAt) }),
    el("td", { class: "failure", text: j.failedReason || "" }))));
  const last = Math.min(page.offset + page.jobs.length, page.total);
  $("page").textContent = page.total ? `${page.offset + 1}-${last} of ${page.total}` : "no jobs";
  $("prev").disabled = page.offset === 0;
  $("next").disabled = last >= page.total;
}

// ---- one job

async function renderJob() {
  $("job-panel").hidden = !view.job;
  if (!view.job) return;
  let j;
  try {
    j = await call("GET", `/queues/${enc(view.queue)}/jobs/${enc(view.job)}`);
  } catch (err) {
    if (String(err.message).startsWith("404")) { view.job = null; $("job-panel").hidden = true; return; }
    throw err;
  }
  $("job-id").textContent = j.id;
  $("job-state").textContent = j.state;
  $("job-state").className = `badge ${j.state}`;
  $("job-progress").value = j.progress;
  $("retry").disabled = j.state !== "failed";
  $("remove").disabled = j.state === "started";
  const fields = [
    ["queue", j.queue], ["function", j.name], ["args", JSON.stringify(j.data.args)],
    ["kwargs", JSON.stringify(j.data.kwargs)], ["attempts", `${j.attempts} of ${j.maxAttempts}`],
    ["priority", j.priority], ["progress", `${j.progress}%`], ["created", when(j.createdAt)],
    ["started", when(j.startedAt)], ["finished", when(j.finishedAt)],
    ["worker", `${j.worker || "-"} (pod ${j.pod || "-"})`], ["timeout", `${j.timeoutSeconds ?? "-"} s`],
    ["result", j.result === null ? "-" : JSON.stringify(j.result)],
  ];
  $("job-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
  $("job-reason").textContent = j.failedReason || "-";
  $("job-trace").textContent = j.stacktrace || "-";
}

// ---- actions and the loop

async function act(method, path, done) {
  try {
    await call(method, path);
    say(done, true);
  } catch (err) {
    say(err.message);
  }
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  try {
    queues = (await call("GET", "/queues")).queues;
    renderQueues();
    await renderQueue();
    await renderJob();
  } catch (err) {
    if (err.message !== "unauthenticated") say(err.message);
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
  }
  timer = setTimeout(refresh, POLL_MS);
}

function signOut(why = "") {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
  say(why);
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = "signed in with a bearer token";
  const [, queue, state] = location.hash.split("/");
  if (queue) Object.assign(view, { queue: decodeURIComponent(queue), state: STATES.includes(state) ? state : "queued" });
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("click", () => {
    const token = $("token").value.trim();
    if (!token) { say("paste a token first"); return; }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    say("");
    start();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE); refresh(); });
  $("next").addEventListener("click", () => { view.offset += PAGE; refresh(); });
  $("retry").addEventListener("click", () =>
    act("POST", `/queues/${enc(view.queue)}/jobs/${enc(view.job)}/retry`, `job ${view.job} retried`));
  $("remove").addEventListener("click", () => {
    const id = view.job;
    view.job = null;
    act("DELETE", `/queues/${enc(view.queue)}/jobs/${enc(id)}`, `job ${id} removed`);
  });
  if (sessionStorage.getItem(TOKEN_KEY)) start(); else $("login").hidden = false;
});
