// Szál web UI: the runs list and the run page with its live DAG.
// Plain browser JavaScript (no build step, no dependencies). It talks to the
// same /api/v1/ API as any client: REST for lists and details, the run's
// Server-Sent Events stream for live updates. On a cluster every request
// carries the bearer token typed into the header field (kept in this tab's
// sessionStorage only); EventSource cannot send headers, so the stream gets
// it as ?access_token=.
"use strict";

const API = "/api/v1";
const TERMINAL = new Set(["Succeeded", "Failed", "TimedOut", "Skipped", "Cancelled", "RolledBack"]);
const LIGHT = new Set(["Skipped", "Waiting", "Paused"]);

function token() { return sessionStorage.getItem("szal-token") || ""; }

function setupToken() {
  const input = document.getElementById("token");
  input.value = token();
  input.addEventListener("change", () => {
    sessionStorage.setItem("szal-token", input.value.trim());
    location.reload();
  });
}

function problem(text) {
  const el = document.getElementById("problem");
  el.textContent = text || "";
  el.hidden = !text;
}

async function api(path, asText) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(API + path, { headers });
  if (response.status === 401) throw new Error("this server needs a bearer token (field at the top right)");
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return asText ? response.text() : response.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child === null || child === undefined ? "" : child);
  return node;
}

function badge(phase) {
  const span = el("span", { class: "phase", "data-phase": phase }, phase);
  span.style.background = "var(--" + phase + ", #9aa0a6)";
  if (LIGHT.has(phase)) span.style.color = "#202124";
  return span;
}

function when(text) { return text ? new Date(text).toLocaleString() : ""; }

function seconds(from, to) {
  if (!from) return "";
  const end = to ? Date.parse(to) : Date.now();
  const s = Math.max(0, (end - Date.parse(from)) / 1000);
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + Math.round(s % 60) + "s";
  return Math.floor(s / 3600) + "h" + Math.round((s % 3600) / 60) + "m";
}

// --- the runs list -------------------------------------------------------

async function runsPage() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams(location.search);
  for (const name of ["namespace", "workflow", "phase"]) form.elements[name].value = params.get(name) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of ["namespace", "workflow", "phase"]) {
      if (form.elements[name].value) next.set(name, form.elements[name].value.trim());
    }
    location.search = next.toString();
  });
  let cursor = null;
  const tbody = document.querySelector("#runs tbody");
  const older = document.getElementById("older");

  async function load(append) {
    const query = new URLSearchParams(params);
    query.set("limit", "50");
    if (append && cursor) query.set("cursor", cursor);
    try {
      const page = await api("/workflowruns?" + query.toString());
      problem("");
      if (!append) tbody.replaceChildren();
      for (const run of page.items) {
        const link = el("a", { href: "/ui/runs/" + encodeURIComponent(run.namespace) + "/" + encodeURIComponent(run.name) }, run.name);
        tbody.append(el("tr", { "data-run": run.name },
          el("td", {}, link), el("td", {}, run.namespace), el("td", {}, run.workflow),
          el("td", {}, badge(run.interrupted ? "Interrupted" : run.phase)), el("td", {}, run.progress || ""),
          el("td", {}, when(run.createdAt)), el("td", {}, seconds(run.startedAt, run.finishedAt))));
      }
      cursor = page.nextCursor;
      older.hidden = !cursor;
    } catch (error) { problem(error.message); }
  }
  older.addEventListener("click", () => load(true));
  await load(false);
  // The first page follows new runs and phase changes; older pages stay as loaded.
  setInterval(() => { if (!cursor || tbody.children.length <= 50) load(false); }, 3000);
}

// --- the run page --------------------------------------------------------

function flatten(spec) {
  // Steps of the workflow (children included) with their predecessors, as the engine orders them.
  const steps = [];
  function walk(list, parent, mode) {
    let previous = null;
    for (const step of list || []) {
      const before = mode === "Dag" ? (step.dependsOn || [])
        : (mode === "Sequential" || mode === "Hierarchical") && previous ? [previous] : [];
      steps.push({ name: step.name, parent, before, rollback: Boolean(step.rollback) });
      if (step.steps) walk(step.steps, step.name, step.mode || "Sequential");
      previous = step.name;
    }
  }
  walk((spec && spec.steps) || [], null, (spec && spec.mode) || "Sequential");
  return steps;
}

function stepStates(detail) {
  // Each step's phase from the event log (complete), attempts from the attempt rows.
  const states = new Map();
  const get = (name) => {
    if (!states.has(name)) states.set(name, { phase: "Pending", attempts: [], rollback: null, note: "" });
    return states.get(name);
  };
  for (const event of detail.events) {
    if (!event.step) continue;
    const state = get(event.step);
    if (event.rollback) { state.rollback = event.new; continue; }
    state.phase = event.new;
    if (event.new === "Skipped" || event.new === "Cancelled") state.note = event.message;
  }
  for (const attempt of detail.attempts) {
    const state = get(attempt.step);
    if (attempt.rollback) { state.rollbackAttempt = attempt; if (!state.rollback) state.rollback = attempt.phase; continue; }
    state.attempts.push(attempt);
    if (!detail.events.some((e) => e.step === attempt.step)) state.phase = attempt.phase;
  }
  return states;
}

function layout(steps) {
  const level = new Map();
  const byName = new Map(steps.map((s) => [s.name, s]));
  function depth(name, seen) {
    if (level.has(name)) return level.get(name);
    const step = byName.get(name);
    if (!step || seen.has(name)) return 0;
    seen.add(name);
    const from = [...step.before, ...(step.parent ? [step.parent] : [])];
    const value = from.length ? 1 + Math.max(...from.map((n) => depth(n, seen))) : 0;
    level.set(name, value);
    return value;
  }
  const rows = new Map();
  const place = new Map();
  for (const step of steps) {
    const x = depth(step.name, new Set());
    const y = rows.get(x) || 0;
    rows.set(x, y + 1);
    place.set(step.name, { x, y });
  }
  return place;
}

const NODE_W = 170, NODE_H = 48, GAP_X = 60, GAP_Y = 22;

function drawDag(svg, steps, states, selected, onSelect) {
  const place = layout(steps);
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  svg.replaceChildren();
  const defs = make("defs", {});
  const marker = make("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" });
  marker.append(make("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa0a6" }));
  defs.append(marker);
  svg.append(defs);
  let width = 0, height = 0;
  const pos = (name) => {
    const p = place.get(name);
    return { x: 20 + p.x * (NODE_W + GAP_X), y: 20 + p.y * (NODE_H + GAP_Y) };
  };
  for (const step of steps) {
    const to = pos(step.name);
    const links = step.before.map((b) => [b, "edge"]).concat(step.parent ? [[step.parent, "edge child"]] : []);
    for (const [from, cls] of links) {
      if (!place.has(from)) continue;
      const a = pos(from);
      svg.append(make("path", { class: cls, d: `M${a.x + NODE_W},${a.y + NODE_H / 2} C${a.x + NODE_W + GAP_X / 2},${a.y + NODE_H / 2} ${to.x - GAP_X / 2},${to.y + NODE_H / 2} ${to.x},${to.y + NODE_H / 2}` }));
    }
  }
  for (const step of steps) {
    const state = states.get(step.name) || { phase: "Pending", attempts: [] };
    const { x, y } = pos(step.name);
    width = Math.max(width, x + NODE_W + 20);
    height = Math.max(height, y + NODE_H + 20);
    const group = make("g", { class: "node" + (LIGHT.has(state.phase) ? " light" : "") + (step.name === selected ? " selected" : ""), "data-step": step.name, "data-phase": state.phase, transform: `translate(${x},${y})` });
    const rect = make("rect", { width: NODE_W, height: NODE_H });
    rect.style.fill = "var(--" + state.phase + ", #9aa0a6)";
    const title = make("text", { x: 8, y: 18 });
    title.textContent = step.name.length > 22 ? step.name.slice(0, 21) + "…" : step.name;
    const last = state.attempts[state.attempts.length - 1];
    const line = [state.phase];
    if (state.attempts.length > 1) line.push("×" + state.attempts.length);
    if (last && last.startedAt) line.push(seconds(state.attempts[0].startedAt, last.finishedAt));
    if (state.rollback) line.push("↺ " + state.rollback);
    const sub = make("text", { x: 8, y: 36 });
    sub.textContent = line.join(" · ");
    const tip = make("title", {});
    tip.textContent = step.name + ": " + state.phase + (state.note ? " (" + state.note + ")" : "");
    group.append(rect, title, sub, tip);
    group.addEventListener("click", () => onSelect(step.name));
    svg.append(group);
  }
  svg.setAttribute("width", String(Math.max(width, 300)));
  svg.setAttribute("height", String(Math.max(height, 80)));
}

async function runPage() {
  const [, , , namespace, name] = location.pathname.split("/").map(decodeURIComponent);
  const base = "/namespaces/" + encodeURIComponent(namespace) + "/workflowruns/" + encodeURIComponent(name);
  document.getElementById("title").textContent = namespace + " / " + name;
  document.title = "Szál · " + name;
  const live = document.getElementById("live");
  let detail = null, steps = [], selected = new URLSearchParams(location.search).get("step");
  let refetch = null;

  function render() {
    const states = stepStates(detail);
    const known = new Set(steps.map((s) => s.name));
    const all = steps.concat([...states.keys()].filter((n) => !known.has(n)).map((n) => ({ name: n, parent: null, before: [] })));
    const run = detail.run;
    document.getElementById("summary").replaceChildren(
      el("span", {}, badge(run.phase)), el("span", {}, "workflow " + run.workflow),
      el("span", {}, "progress " + (run.progress || "")), el("span", {}, "started " + when(run.startedAt)),
      el("span", {}, "duration " + seconds(run.startedAt, run.finishedAt)),
      el("span", {}, run.message || ""));
    drawDag(document.getElementById("dag"), all, states, selected, (step) => { selected = step; render(); showStep(); });
    if (selected) showStep(true);
  }

  async function showStep(quiet) {
    const states = stepStates(detail);
    const state = states.get(selected) || { phase: "Pending", attempts: [] };
    const panel = document.getElementById("step");
    panel.hidden = false;
    document.getElementById("step-name").replaceChildren(selected + " ", badge(state.phase));
    document.getElementById("step-note").textContent = state.note || (state.rollback ? "compensation: " + state.rollback : "");
    const tbody = document.querySelector("#attempts tbody");
    tbody.replaceChildren(...state.attempts.concat(state.rollbackAttempt ? [state.rollbackAttempt] : []).map((a) =>
      el("tr", {}, el("td", {}, a.rollback ? "compensation" : String(a.attempt)), el("td", {}, badge(a.phase)),
        el("td", {}, when(a.startedAt)), el("td", {}, when(a.finishedAt)), el("td", {}, seconds(a.startedAt, a.finishedAt)),
        el("td", {}, a.exitCode === null ? "" : String(a.exitCode)), el("td", {}, a.message || ""))));
    const logs = document.getElementById("logs");
    if (!state.attempts.length) { logs.textContent = state.note ? "(never ran: " + state.note + ")" : "(not started)"; return; }
    try {
      logs.textContent = (await api(base + "/steps/" + encodeURIComponent(selected) + "/logs", true)) || "(no output)";
    } catch (error) { if (!quiet) logs.textContent = error.message; }
    const rbTitle = document.getElementById("rollback-title"), rbLogs = document.getElementById("rollback-logs");
    rbTitle.hidden = rbLogs.hidden = !state.rollbackAttempt;
    if (state.rollbackAttempt) {
      try { rbLogs.textContent = await api(base + "/steps/" + encodeURIComponent(selected) + "/logs?rollback=true", true); } catch (e) { /* shown above */ }
    }
  }

  async function reload() {
    detail = await api(base);
    if (!steps.length) steps = flatten(detail.workflow);
    render();
  }

  try { await reload(); } catch (error) { problem(error.message); live.textContent = "offline"; return; }
  const last = detail.events.length ? detail.events[detail.events.length - 1].id : 0;
  const query = new URLSearchParams({ after: String(last) });
  if (token()) query.set("access_token", token());
  const source = new EventSource(API + base + "/events?" + query.toString());
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    if (detail.events.some((e) => e.id === event.id)) return;
    detail.events.push(event);
    if (!event.step) detail.run.phase = event.new;
    render();
    // Attempts, durations and messages come with the next detail, fetched once a burst is over.
    clearTimeout(refetch);
    refetch = setTimeout(() => reload().catch((e) => problem(e.message)), 300);
  };
  source.addEventListener("step", onEvent);
  source.addEventListener("run", onEvent);
  source.addEventListener("end", () => {
    source.close();
    live.textContent = "ended"; live.className = "live ended";
    reload().catch((e) => problem(e.message));
  });
  source.addEventListener("resync", () => { source.close(); location.reload(); });
  source.addEventListener("error", () => { if (source.readyState === EventSource.CLOSED) live.textContent = "disconnected"; });
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  const page = document.body.dataset.page;
  (page === "run" ? runPage() : runsPage()).catch((error) => problem(error.message));
});
