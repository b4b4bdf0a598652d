// ops.js: the migration console (/ops). Polls GET /api/admin/report every second with the admin
// token and shows, per event type, the stage in force, the parity counters and the delivery rates;
// its buttons call the admin API (PUT /api/admin/flags/{type}, POST/DELETE /api/admin/flags/kill).
//
// The admin token is never the demo user's: it comes from `?admin_token=` on the URL (then removed
// from the address bar) or the form, and is kept in sessionStorage: for this tab's session only,
// never on disk for the next visitor of a shared machine.
// Delivery rates are computed here: (delivered now - delivered then) / (generated_at now -
// generated_at then), between two reports at least MIN_RATE_WINDOW_S apart on the server's clock.

import { h } from "./dom.js";

const POLL_MS = 1000;
const MAX_RETRY_MS = 5000;
const MIN_RATE_WINDOW_S = 0.8;
const ARM_MS = 5000;
const TOKEN_KEY = "wsmigrate.admin_token";
const STAGES = ["off", "shadow", "live", "complete"];
const PATHS = ["legacy", "unified"];
const PROBE_KIND_PREFIX = "wsmigrate_probe";

const $ = (id) => document.getElementById(id);

const state = {
  token: "",
  report: null, // the report on screen (buttons act on what is shown)
  baseline: null, // the report the rates are measured from
  rates: new Map(), // type -> {legacy, unified} per second, or null
  rows: new Map(), // type -> {tr, cells, promote, rollback}
  paused: false,
  generation: 0, // bumped to discard a report in flight (pause, new token, newer refresh)
  timer: 0,
  failures: 0,
  armed: null, // {type, target, timer}: an unsafe promotion waiting for its confirming click
  readOnly: false, // the flags come from a store wsmigrate does not write (`store.writable`)
};

// -- admin token ------------------------------------------------------------------------------------

function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage unavailable (private mode): the token lasts as long as the page
  }
}

function initialToken() {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("admin_token");
  if (fromUrl !== null) {
    params.delete("admin_token"); // out of the address bar, the history and the screenshots
    const query = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
    storeToken(fromUrl.trim());
    return fromUrl.trim();
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

// -- admin API --------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function detailOf(data, text) {
  const detail = data && data.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  return (text || "").slice(0, 200) || "no details";
}

/** JSON from the admin API; throws ApiError(message = the server's `detail`, status; 0 = unreachable). */
async function admin(method, path, body) {
  const headers = { accept: "application/json", authorization: `Bearer ${state.token}`,
    "x-wsmigrate-actor": "ops-console" };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(`server unreachable (${error.message})`, 0);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(detailOf(data, text), response.status);
  if (data === null) throw new ApiError(`unexpected answer: ${text.slice(0, 200)}`, response.status);
  return data;
}

const httpStatus = (error) => (error.status ? `HTTP ${error.status}` : "network");

// -- messages and status ----------------------------------------------------------------------------

function showPollError(message) {
  const box = $("poll-error");
  box.hidden = !message;
  box.textContent = message || "";
}

/** The outcome of the last action: stays until dismissed or replaced (never wiped by a poll). */
function showAction(message, kind) {
  const box = $("action-msg");
  box.hidden = false;
  box.dataset.kind = kind;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.querySelector(".text").textContent = message;
}

function setStatus(kind, text) {
  const badge = $("status");
  badge.dataset.state = kind;
  badge.textContent = text;
}

function timeOf(report) {
  return new Date(report.generated_at * 1000).toLocaleTimeString();
}

function markStale(stale) {
  $("ops-table").dataset.stale = String(stale);
}

function placeholder(message) {
  state.rows.clear();
  $("ops-rows").replaceChildren(h("tr", { class: "placeholder" }, h("td", { colspan: 11 }, message)));
  $("ops-table").dataset.state = "empty";
}

// -- polling ----------------------------------------------------------------------------------------

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = 0;
  state.generation += 1; // a report in flight is not shown
}

function schedule(delay) {
  clearTimeout(state.timer);
  state.timer = 0;
  if (!state.paused && state.token) state.timer = setTimeout(refresh, delay);
}

function noToken() {
  stopPolling();
  showPollError("An admin token is required: enter WSMIGRATE_ADMIN_TOKEN above "
    + "(the demo user's token is not an admin token).");
  setStatus("idle", "○ no admin token");
  $("kill-button").disabled = true;
  if (!state.report) placeholder("No data: the console needs the admin token.");
  markStale(true);
}

async function refresh() {
  clearTimeout(state.timer);
  state.timer = 0;
  if (!state.token) {
    noToken();
    return;
  }
  const generation = ++state.generation;
  let report;
  try {
    report = await admin("GET", "/api/admin/report");
  } catch (error) {
    if (generation === state.generation) failed(error);
    return;
  }
  if (generation !== state.generation) return;
  state.failures = 0;
  showPollError(null);
  schedule(POLL_MS);
  try {
    render(report);
  } catch (error) {
    showPollError(`Could not show the report: ${error.message}`);
    throw error; // a bug of this page: also on the console
  }
}

function failed(error) {
  state.failures += 1;
  markStale(true);
  if (error.status === 401 || error.status === 403) {
    // the same token will not start working: wait for a new one instead of retrying
    const refused = error.status === 401;
    showPollError(`Admin API ${refused ? "refused the token" : "unavailable"} (HTTP ${error.status}): `
      + `${error.message}.${refused ? " Enter the admin token above." : ""}`);
    setStatus("error", refused ? "○ token refused" : "○ admin API unavailable");
    if (!state.report) placeholder(`No data: ${error.message}.`);
    return;
  }
  const retry = Math.min(POLL_MS * 2 ** (state.failures - 1), MAX_RETRY_MS);
  showPollError(`Report unavailable (${httpStatus(error)}): ${error.message}. Retrying in ${retry / 1000} s`
    + (state.report ? `; the table shows the report of ${timeOf(state.report)}.` : "."));
  setStatus("error", "○ report unavailable");
  if (!state.report) placeholder(`No data: ${error.message}.`);
  schedule(retry);
}

function setPaused(paused) {
  state.paused = paused;
  const button = $("pause");
  button.dataset.paused = String(paused);
  button.textContent = paused ? "Resume updates" : "Pause updates";
  if (paused) {
    stopPolling(); // the table stays exactly as it is until resumed or an action refreshes it
    setStatus("paused", state.report ? `○ paused · report of ${timeOf(state.report)}` : "○ paused");
  } else {
    refresh();
  }
}

// -- rendering --------------------------------------------------------------------------------------

const count = (n) => Number(n).toLocaleString("en-US");
const nextStage = (stage) => STAGES[STAGES.indexOf(stage) + 1] || null;
const previousStage = (stage) => (STAGES.indexOf(stage) > 0 ? STAGES[STAGES.indexOf(stage) - 1] : null);

function percent(value) {
  if (value == null) return "–";
  return `${(Math.floor(value * 100) / 100).toFixed(2)}%`; // never rounds up to a passing value
}

function rate(value) {
  if (value == null) return "–";
  if (value === 0) return "0";
  return value >= 100 ? count(Math.round(value)) : value.toFixed(1);
}

function updateRates(report) {
  const base = state.baseline;
  if (!base || report.generated_at < base.generated_at) {
    state.baseline = report;
    return;
  }
  const elapsed = report.generated_at - base.generated_at;
  if (elapsed < MIN_RATE_WINDOW_S) return; // an early refresh (after an action): keep the last rates
  for (const [type, info] of Object.entries(report.types)) {
    const before = base.types[type];
    const rates = {};
    for (const path of PATHS) {
      const delta = before ? info.delivered[path] - before.delivered[path] : Number.NaN;
      rates[path] = delta >= 0 ? delta / elapsed : null; // a counter going down: the server restarted
    }
    state.rates.set(type, rates);
  }
  state.baseline = report;
}

function render(report) {
  updateRates(report);
  state.report = report;
  const revision = $("revision");
  revision.textContent = String(report.revision);
  revision.dataset.revision = String(report.revision);

  const killState = $("kill-state");
  killState.dataset.state = report.kill_switch ? "engaged" : "released";
  killState.textContent = report.kill_switch ? "ENGAGED" : "released";
  const kill = $("kill-button");
  kill.disabled = false;
  kill.dataset.engaged = String(report.kill_switch);
  kill.textContent = report.kill_switch ? "Release kill switch" : "Engage kill switch";
  $("default-stage").textContent = report.default_stage;

  // `unified` first, then the application's legacy views in the server's order; wsmigrate's own
  // probe sockets (kinds `wsmigrate_probe*`) apart, labelled, so they are not read as users
  const isProbe = (kind) => kind.startsWith(PROBE_KIND_PREFIX);
  const kinds = ["unified", ...Object.keys(report.connections).filter((k) => k !== "unified" && !isProbe(k))];
  const probes = Object.entries(report.connections).filter(([kind]) => isProbe(kind))
    .reduce((sum, [, n]) => sum + n, 0);
  $("connections").replaceChildren(
    ...kinds.map((kind) => h("span", { class: "conn-kind", dataset: { kind } },
      h("b", {}, count(report.connections[kind] ?? 0)), ` ${kind}`)),
    h("span", { class: "conn-kind probes muted", dataset: { kind: "probes" },
      title: "wsmigrate's own synthetic probe sockets (WSMIGRATE_PROBES), not application clients" },
    h("b", {}, count(probes)), " probes"));

  // An idle server: say what would bring numbers, instead of a table of zeros
  const quiet = Object.values(report.types).every((t) => !t.published);
  $("idle-hint").hidden = !quiet;

  // A read-only store (the team's own flag system): the buttons would only be refused; say where
  // the flags are changed instead.
  const store = report.store || { writable: true };
  state.readOnly = store.writable === false;
  const source = $("flags-source");
  source.hidden = !state.readOnly;
  source.textContent = state.readOnly
    ? `Flags come from ${store.kind === "openfeature" ? "the OpenFeature provider" : store.kind} `
      + `“${store.provider || "?"}”: change them there (flag ${store.stage_flag || "?"}). The buttons are off.`
    : "";
  kill.disabled = state.readOnly;

  const flagsError = $("flags-error");
  flagsError.hidden = !report.last_error;
  flagsError.textContent = report.last_error ? `Flags store: ${report.last_error}` : "";

  const types = Object.entries(report.types);
  const unified = types.filter(([, t]) => t.stage === "live" || t.stage === "complete").length;
  const shadow = types.filter(([, t]) => t.stage === "shadow").length;
  $("summary").textContent = `unified path serves ${unified}/${types.length} types · ${shadow} in shadow`;

  if ($("ops-table").dataset.state !== "ready" || types.some(([type]) => !state.rows.has(type))) {
    $("ops-rows").replaceChildren(...types.map(([type]) => buildRow(type)));
    $("ops-table").dataset.state = "ready";
  }
  for (const [type, info] of types) updateRow(type, info, report);
  markStale(false);
  if (state.paused) setStatus("paused", `○ paused · report of ${timeOf(report)}`);
  else setStatus("live", `● live · report of ${timeOf(report)}`);
}

function buildRow(type) {
  const cell = (cls) => h("td", { class: cls });
  const cells = {
    stage: cell("stage-cell"), consistency: cell("num consistency"), compared: cell("num compared"),
    missing: cell("num missing"), mismatches: cell("num mismatches"), published: cell("num published"),
    legacy: cell("num rate-legacy"), unified: cell("num rate-unified"), verdict: cell("verdict"),
  };
  const rollback = h("button", { type: "button", class: "rollback", onclick: () => rollbackClicked(type) });
  const promote = h("button", { type: "button", class: "promote", onclick: () => promoteClicked(type) });
  const tr = h("tr", { dataset: { type } }, h("td", { class: "type" }, type), cells.stage, cells.consistency,
    cells.compared, cells.missing, cells.mismatches, cells.published, cells.legacy, cells.unified, cells.verdict,
    h("td", { class: "actions" }, rollback, promote));
  state.rows.set(type, { tr, cells, rollback, promote });
  return tr;
}

function updateRow(type, info, report) {
  const { tr, cells, rollback, promote } = state.rows.get(type);
  Object.assign(tr.dataset, { stage: info.stage, configured: info.configured_stage, source: info.source });

  const notes = [];
  if (info.source === "kill_switch") notes.push(h("span", { class: "stage-note override" }, "kill switch"));
  if (info.source === "pin") notes.push(h("span", { class: "stage-note override" }, "pinned"));
  if (info.source === "cohort") notes.push(h("span", { class: "stage-note" }, `${info.live_percent}% live`));
  if (info.provider_cohort && info.provider_cohort.live > 0) {
    const { live, legacy } = info.provider_cohort;
    notes.push(h("span", { class: "stage-note", title: "picked by the flag system, on the worker that answered" },
      `${live} of ${live + legacy} legacy sockets live`));
  }
  if (info.configured_stage !== info.stage) {
    notes.push(h("span", { class: "stage-note" }, `configured: ${info.configured_stage}`));
  }
  cells.stage.replaceChildren(h("span", { class: "stage", dataset: { stage: info.stage } }, info.stage), ...notes);

  cells.consistency.textContent = percent(info.consistency);
  cells.consistency.classList.toggle("bad", info.consistency != null
    && info.consistency < report.thresholds.min_consistency);
  cells.compared.textContent = count(info.compared);
  cells.missing.textContent = count(info.missing);
  cells.missing.classList.toggle("bad", info.missing > 0);
  cells.mismatches.textContent = count(info.mismatches);
  cells.mismatches.classList.toggle("bad", info.mismatches > 0);
  cells.published.textContent = count(info.published);
  const rates = state.rates.get(type);
  for (const path of PATHS) {
    cells[path].textContent = rate(rates ? rates[path] : null);
    cells[path].title = `${count(info.delivered[path])} sent on the ${path} path in total`;
  }
  cells.verdict.dataset.safe = String(info.safe);
  cells.verdict.title = info.verdict;
  cells.verdict.textContent = info.safe ? `✓ ${info.verdict}` : `✗ ${info.verdict.replace(/^not safe: /, "")}`;

  const back = previousStage(info.configured_stage);
  rollback.disabled = !back;
  rollback.textContent = `◀ ${back || "–"}`;
  rollback.title = back ? `Roll back ${type}: ${info.configured_stage} → ${back}` : `${type} is off`;
  const next = nextStage(info.configured_stage);
  const armed = Boolean(state.armed && state.armed.type === type && state.armed.target === next);
  if (state.armed && state.armed.type === type && !armed) {
    clearTimeout(state.armed.timer); // the stage moved since: that confirmation no longer applies
    state.armed = null;
  }
  // While the kill switch is engaged every type is served the `off` way whatever its stage says:
  // promoting then would change what happens the moment the switch is released, unseen.
  const killed = Boolean(report.kill_switch);
  rollback.disabled = rollback.disabled || state.readOnly;
  promote.disabled = !next || killed || state.readOnly;
  promote.dataset.armed = String(armed && !killed);
  promote.textContent = armed && !killed ? `confirm ${next} ▶` : `${next || "–"} ▶`;
  promote.title = killed ? "Release the kill switch before promoting"
    : next ? `Promote ${type}: ${info.configured_stage} → ${next} (${info.verdict})` : `${type} is complete`;
}

// -- actions ----------------------------------------------------------------------------------------

function disarm() {
  if (!state.armed) return;
  const { type, timer } = state.armed;
  clearTimeout(timer);
  state.armed = null;
  if (state.rows.has(type) && state.report) updateRow(type, state.report.types[type], state.report);
}

function promoteClicked(type) {
  const info = state.report && state.report.types[type];
  const target = info && nextStage(info.configured_stage);
  if (!target) return;
  const confirmed = state.armed && state.armed.type === type && state.armed.target === target;
  if (!info.safe && !confirmed) {
    // the numbers do not back this move: ask for a second click instead of a dialog
    disarm();
    state.armed = { type, target, timer: setTimeout(disarm, ARM_MS) };
    updateRow(type, info, state.report);
    showAction(`${type}: ${info.verdict}. Click “confirm ${target}” within ${ARM_MS / 1000} s to promote anyway.`,
      "warn");
    return;
  }
  disarm();
  changeStage("Promote", type, info.configured_stage, target);
}

function rollbackClicked(type) {
  const info = state.report && state.report.types[type];
  const target = info && previousStage(info.configured_stage);
  if (target) changeStage("Roll back", type, info.configured_stage, target);
}

/** Run an admin call with its buttons disabled (no double submit), then show its effect at once. */
async function act(type, action) {
  const row = type && state.rows.get(type);
  const buttons = row ? [row.promote, row.rollback] : [$("kill-button")];
  for (const button of buttons) button.disabled = true;
  try {
    await action();
  } finally {
    if (row && state.report) updateRow(type, state.report.types[type], state.report);
    else $("kill-button").disabled = false;
    await refresh(); // paused or not: an operator sees what the click did
  }
}

function changeStage(verb, type, from, to) {
  return act(type, async () => {
    try {
      const flags = await admin("PUT", `/api/admin/flags/${encodeURIComponent(type)}`, { stage: to, force: false });
      showAction(`${verb} ${type}: ${from} → ${to} (flags revision ${flags.revision}).`, "ok");
    } catch (error) {
      showAction(`${verb} ${type} ${from} → ${to} refused (${httpStatus(error)}): ${error.message}`, "error");
    }
  });
}

function toggleKill() {
  if (!state.report) return Promise.resolve();
  const engage = !state.report.kill_switch;
  return act(null, async () => {
    try {
      const flags = await admin(engage ? "POST" : "DELETE", "/api/admin/flags/kill");
      showAction(engage
        ? `Kill switch engaged: every type is served by the legacy path (flags revision ${flags.revision}).`
        : `Kill switch released: configured stages apply again (flags revision ${flags.revision}).`, "ok");
    } catch (error) {
      showAction(`${engage ? "Engaging" : "Releasing"} the kill switch failed (${httpStatus(error)}): `
        + `${error.message}`, "error");
    }
  });
}

// -- start-up ---------------------------------------------------------------------------------------

function useToken(token) {
  state.token = token;
  state.failures = 0;
  $("admin-token").placeholder = token ? "•••••••• (remembered)" : "WSMIGRATE_ADMIN_TOKEN";
  if (!token) {
    noToken();
    return;
  }
  showPollError(null);
  setStatus("connecting", "○ connecting");
  refresh();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("admin-token");
  const token = input.value.trim();
  input.value = "";
  if (!token) {
    useToken(state.token); // nothing typed: try the current token again
    return;
  }
  storeToken(token);
  useToken(token);
});
$("forget-token").addEventListener("click", () => {
  storeToken("");
  useToken("");
});
$("pause").addEventListener("click", () => setPaused(!state.paused));
$("kill-button").addEventListener("click", () => toggleKill());
$("action-msg").querySelector(".dismiss").addEventListener("click", () => {
  $("action-msg").hidden = true;
});

window.__ops = { state, refresh }; // for the console and the browser tests
useToken(initialToken());
