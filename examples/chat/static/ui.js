// ui.js: the DOM side of the demo pages, shared by app.js (one wsClient) and legacy.js (one socket
// per view). Views here know nothing about sockets: the page wires a transport to them.

import { h } from "./dom.js";
import { positionsFromResponse } from "./wsclient.js";

export { h };

export const STATUSES = ["idle", "running", "error", "offline"];

/** The demo user's token: `?token=` on the page URL (remembered), else what was remembered. */
export function pageToken() {
  const fromUrl = new URLSearchParams(location.search).get("token");
  try {
    if (fromUrl) localStorage.setItem("wsmigrate.token", fromUrl);
    return fromUrl || localStorage.getItem("wsmigrate.token") || null;
  } catch {
    return fromUrl;
  }
}

let devSession = null;

/**
 * The token the page signs in with: `?token=` (or the remembered one), else, on a development
 * server, the demo user's token from `/api/dev/session` (404 elsewhere: no token). Asked once.
 */
export function sessionToken() {
  const explicit = pageToken();
  if (explicit) return Promise.resolve(explicit);
  devSession ??= fetch("/api/dev/session", { headers: { accept: "application/json" } })
    .then((response) => (response.ok ? response.json() : null))
    .then((session) => (session && session.auth && session.token) || null)
    .catch(() => null);
  return devSession;
}

/** JSON over REST with the page's token; throws an Error carrying the server's `detail` and `status`. */
export async function api(method, path, body) {
  return (await apiResponse(method, path, body)).data;
}

/**
 * A view's snapshot over REST: its body and the positions of its topics, read by the server before
 * the snapshot (in the body's `positions`, else the `Wsmigrate-Positions` header). Subscribe
 * `since` them: nothing between the snapshot and the subscription is missed.
 */
export async function snapshot(path) {
  const { data, response } = await apiResponse("GET", path);
  const positions = (data && !Array.isArray(data) && data.positions) || positionsFromResponse(response);
  return { data, positions };
}

/** An Error a view can explain: `status` is the HTTP status, 0 when the server was not reached. */
function requestError(message, status) {
  const error = new Error(message);
  error.status = status;
  return error;
}

async function apiResponse(method, path, body) {
  const headers = { accept: "application/json" };
  const token = await sessionToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw requestError("the server could not be reached (network error)", 0);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null; // a proxy's or a crashed server's HTML page: the status says enough
  }
  if (!response.ok) {
    if (response.status === 401) pageRefused({ kind: "unauthenticated", reason: "REST answered 401" });
    const detail = data && typeof data.detail === "string" ? data.detail : null;
    throw requestError(detail || `the server answered HTTP ${response.status}`, response.status);
  }
  return { data, response };
}

// -- signed out -----------------------------------------------------------------------------------

/**
 * The page's refusal, once the server refused it for good: `{kind: "unauthenticated" | "forbidden",
 * reason}` from a REST 401 or a socket closed with 4401 / 4403 (origin). Retrying cannot help until
 * the user signs in (or the server allows the origin), so the page says so instead of retrying.
 */
export const session = new EventTarget();
let refusal = null;

/** What a connection badge says of a refused page: a final state, unlike "reconnecting". */
export const REFUSAL_LABELS = { unauthenticated: "signed out", forbidden: "refused · origin not allowed" };

export function pageRefusal() {
  return refusal;
}

/** Record the refusal (the first one: every request of a signed-out page repeats it) and explain it. */
export function pageRefused(detail) {
  if (refusal) return;
  refusal = { kind: detail.kind, reason: detail.reason || "" };
  renderRefusal(refusal);
  session.dispatchEvent(new CustomEvent("refused", { detail: refusal }));
}

function forgetToken() {
  try {
    localStorage.removeItem("wsmigrate.token");
  } catch {
    // storage unavailable: nothing was remembered
  }
  location.replace(`${location.pathname}${location.hash}`); // also drops a refused ?token= from the URL
}

function renderRefusal({ kind }) {
  let notice = document.getElementById("notice");
  if (!notice) { // a page without the placeholder (app.html and legacy.html have one)
    notice = h("div", { id: "notice", class: "notice", role: "alert" });
    document.getElementById("view").before(notice);
  }
  notice.dataset.kind = kind;
  if (kind === "forbidden") {
    notice.replaceChildren(
      h("strong", {}, "Live updates are refused for this address."),
      ` The server does not allow pages served from ${location.origin} to open sockets; `,
      "add it to the server's allowed origins (", h("code", {}, "WSMIGRATE_ALLOWED_ORIGINS"), ").");
  } else {
    const used = pageToken();
    notice.replaceChildren(
      h("strong", {}, "Sign in: "), "open this page with ", h("code", {}, "?token=<your token>"),
      " at the end of its address; the page remembers the token.",
      used ? h("span", { class: "refused-token" }, " The token this page used was not accepted. ",
        h("button", { type: "button", class: "forget-token", onclick: forgetToken }, "Forget it")) : null,
      h("span", { class: "dev-hint" }, "Development server: ", h("code", {}, "make run"),
        " prints the demo user's token at start and keeps it in ", h("code", {}, "var/demo-token"),
        "; with ", h("code", {}, "WSMIGRATE_DEV_MODE=true"), " the pages sign in by themselves."));
  }
  notice.hidden = false;
}

/** "#/chat/45" -> {name: "chat", id: 45}; anything else -> {name: "dashboard"}. */
export function parseRoute(hash) {
  const match = /^#\/chat\/(\d+)$/.exec(hash || "");
  return match ? { name: "chat", id: Number(match[1]) } : { name: "dashboard" };
}

/** A hash router: `mount(route)` returns the view's unmount function. */
export function startRouter(mount) {
  let unmount = null;
  const render = () => {
    if (unmount) unmount();
    unmount = mount(parseRoute(location.hash));
  };
  window.addEventListener("hashchange", render);
  render();
}

export function flash(root, message) {
  const note = h("div", { class: "flash", role: "alert" }, message);
  root.prepend(note);
  setTimeout(() => note.remove(), 4000);
}

const newer = (a, b) => {
  if (!b) return true;
  if (a.version != null && b.version != null) return a.version >= b.version;
  return !a.updated_at || !b.updated_at || a.updated_at >= b.updated_at;
};

// -- Dashboard ------------------------------------------------------------------------------------

/**
 * The Dashboard's REST actions, shared by both pages. `create` decides how a new agent reaches the
 * list: live pages add the REST answer at once; the legacy page re-reads the whole list, as the
 * old dashboard did (it had no live feed of new agents).
 */
export function dashboardActions(getView, { create } = {}) {
  return {
    create: create ?? (async (name) => getView().upsertAgent(await api("POST", "/api/agents", { name }))),
    rename: async (id, name) => getView().upsertAgent(await api("PATCH", `/api/agents/${id}`, { name })),
    setStatus: async (id, status) => getView().upsertAgent(await api("PATCH", `/api/agents/${id}`, { status })),
    remove: async (id) => {
      await api("DELETE", `/api/agents/${id}`);
      getView().removeAgent(id);
    },
    newChat: async (agentId) => {
      const thread = await api("POST", "/api/threads", { agent_id: agentId, title: `Chat ${new Date().toLocaleTimeString()}` });
      location.hash = `#/chat/${thread.id}`;
    },
  };
}

// A delete waits this long for its confirming click, then the button is a plain "Delete" again.
export const CONFIRM_MS = 4000;

/**
 * A destructive button that asks first, in the page (no window.confirm: the same UI for every
 * user and every test): the first click turns it into `confirmText`; a second click within
 * CONFIRM_MS runs `action`; the timeout, Escape or leaving the button disarm it.
 */
export function confirmButton(attrs, label, confirmText, action) {
  let timer = 0;
  const button = h("button", { type: "button", ...attrs, dataset: { armed: "false" } }, label);
  const disarm = () => {
    clearTimeout(timer);
    timer = 0;
    button.dataset.armed = "false";
    button.textContent = label;
  };
  button.addEventListener("click", () => {
    if (button.dataset.armed !== "true") {
      button.dataset.armed = "true";
      button.textContent = confirmText;
      timer = setTimeout(disarm, CONFIRM_MS);
      return;
    }
    disarm();
    button.disabled = true; // no second request while this one runs
    Promise.resolve().then(action).finally(() => {
      button.disabled = false;
    });
  });
  button.addEventListener("blur", disarm);
  button.addEventListener("keydown", (e) => {
    if (e.key === "Escape") disarm();
  });
  return button;
}

/** Live list of agents with status, their chats, and create / rename / status / delete. */
export class DashboardView {
  /** actions: {create(name), rename(id, name), setStatus(id, status), remove(id), newChat(agentId)} */
  constructor(root, actions, { subtitle = "" } = {}) {
    this.actions = actions;
    this.agents = new Map();
    this.deleted = new Set();
    this.threads = new Map();
    this.list = h("ul", { class: "agents", id: "agent-list" });
    this.empty = h("p", { class: "empty" }, "No agents yet: create one above.");
    const name = h("input", { id: "new-agent-name", name: "name", placeholder: "New agent name", required: true,
      maxlength: "200", autocomplete: "off" });
    const submit = h("button", { type: "submit", class: "primary" }, "Create agent");
    this.form = h("form", { class: "create", id: "create-agent", onsubmit: (e) => {
      e.preventDefault();
      const value = name.value.trim();
      if (!value || submit.disabled) return;
      submit.disabled = true;
      // the name stays in the field until the agent exists: a failed create loses nothing
      this._run(async () => {
        await actions.create(value);
        if (name.value.trim() === value) name.value = "";
      }).finally(() => {
        submit.disabled = false;
      });
    } }, name, submit);
    this.el = h("section", { class: "view dashboard", dataset: { view: "dashboard" } },
      h("div", { class: "view-head" }, h("h2", {}, "Agents"), subtitle ? h("p", { class: "muted" }, subtitle) : null),
      this.form, this.empty, this.list);
    root.replaceChildren(this.el);
  }

  ready() {
    this.el.dataset.ready = "true";
  }

  /** Run an action; its failure is shown (and the returned promise settles either way). */
  _run(action) {
    return Promise.resolve().then(action).catch((error) => {
      if (error.status !== 401) flash(this.el, error.message); // a 401 is the page's sign-in notice
    });
  }

  /** The list could not be read: say so where "No agents yet" would be (it is not known to be empty). */
  failed(message) {
    this.empty.textContent = `The agents could not be loaded: ${message}.`;
    this.empty.classList.add("load-error");
    this.empty.setAttribute("role", "alert");
    this.empty.hidden = false;
    this.el.dataset.failed = "true";
  }

  /** Signed out: nothing to list or create until the user signs in (the page's notice says how). */
  signedOut() {
    this.el.dataset.signedOut = "true";
    this.empty.hidden = true;
    for (const control of this.form.elements) control.disabled = true;
  }

  /** Merge a REST snapshot; `replace` also drops what the snapshot no longer has (resync). */
  setAgents(agents, { replace = false } = {}) {
    if (replace) {
      const ids = new Set(agents.map((a) => a.id));
      for (const id of [...this.agents.keys()]) if (!ids.has(id)) this.removeAgent(id);
      this.deleted.clear();
    }
    for (const agent of agents) this.upsertAgent(agent, { force: replace });
    this._toggleEmpty();
  }

  setThreads(threads, { replace = false } = {}) {
    if (replace) this.threads.clear();
    for (const thread of threads) this.threads.set(thread.id, thread);
    for (const id of this.agents.keys()) this._renderThreads(id);
  }

  upsertThread(thread) {
    this.threads.set(thread.id, thread);
    this._renderThreads(thread.agent_id);
  }

  removeThread(id) {
    const thread = this.threads.get(id);
    this.threads.delete(id);
    if (thread) this._renderThreads(thread.agent_id);
  }

  upsertAgent(agent, { force = false } = {}) {
    const id = agent.id ?? agent.agent_id;
    if (this.deleted.has(id)) return;
    const current = this.agents.get(id);
    if (!force && current && !newer(agent, current)) return;
    const merged = { ...current, ...agent, id };
    this.agents.set(id, merged);
    let row = this.list.querySelector(`li[data-agent-id="${id}"]`);
    if (!row) {
      row = this._row(id);
      const after = [...this.list.children].find((li) => Number(li.dataset.agentId) > id);
      this.list.insertBefore(row, after || null);
    }
    row.dataset.status = merged.status;
    row.querySelector(".agent-name").textContent = merged.name;
    const badge = row.querySelector(".status");
    badge.textContent = merged.status;
    badge.dataset.status = merged.status;
    const select = row.querySelector(".status-select");
    if (document.activeElement !== select) select.value = merged.status;
    this._renderThreads(id);
    this._toggleEmpty();
  }

  removeAgent(id) {
    this.deleted.add(id);
    this.agents.delete(id);
    this.list.querySelector(`li[data-agent-id="${id}"]`)?.remove();
    this._toggleEmpty();
  }

  _toggleEmpty() {
    if (this.el.dataset.failed || this.el.dataset.signedOut) return; // not known to be empty
    this.empty.hidden = this.agents.size > 0;
  }

  _row(id) {
    const actions = this.actions;
    const nameSpan = h("span", { class: "agent-name" });
    const select = h("select", { class: "status-select", "aria-label": "status", onchange: () => {
      this._run(() => actions.setStatus(id, select.value));
    } }, STATUSES.map((s) => h("option", { value: s }, s)));
    const rename = h("button", { type: "button", class: "edit", onclick: () => this._editName(id, nameSpan) }, "Rename");
    const remove = confirmButton({ class: "delete danger" }, "Delete", "Confirm delete?",
      () => this._run(() => actions.remove(id)));
    return h("li", { class: "agent card", dataset: { agentId: id } },
      h("div", { class: "agent-main" },
        h("span", { class: "agent-id muted" }, `#${id}`), nameSpan, h("span", { class: "status badge" })),
      h("div", { class: "agent-threads" }),
      h("div", { class: "agent-actions" }, select, rename, remove));
  }

  _editName(id, nameSpan) {
    const input = h("input", { class: "rename-input", value: this.agents.get(id)?.name ?? "", maxlength: "200" });
    const done = () => form.replaceWith(nameSpan);
    const form = h("form", { class: "rename", onsubmit: (e) => {
      e.preventDefault();
      const value = input.value.trim();
      done();
      if (value) this._run(() => this.actions.rename(id, value));
    } }, input, h("button", { type: "submit", class: "primary save" }, "Save"),
    h("button", { type: "button", onclick: done }, "Cancel"));
    nameSpan.replaceWith(form);
    input.focus();
    input.select();
  }

  _renderThreads(agentId) {
    const row = this.list.querySelector(`li[data-agent-id="${agentId}"]`);
    if (!row) return;
    const threads = [...this.threads.values()].filter((t) => t.agent_id === agentId).sort((a, b) => a.id - b.id);
    const links = threads.map((t) => h("a", { class: "thread-link", href: `#/chat/${t.id}`, dataset: { threadId: t.id } },
      t.title || `Chat ${t.id}`));
    const create = h("button", { type: "button", class: "new-chat", onclick: () => {
      this._run(() => this.actions.newChat(agentId));
    } }, "+ New chat");
    row.querySelector(".agent-threads").replaceChildren(...links, create);
  }
}

// -- Chat -----------------------------------------------------------------------------------------

/** Why a chat cannot be used, as the user reads it (one notice: see ChatView.gone). */
export const CHAT_GONE = {
  deleted: "This chat no longer exists: it was deleted.",
  missing: "This chat does not exist, or you do not have access to it.",
  forbidden: "You do not have access to this chat.",
};

// From the least to the most precise: "missing" is all a REST 404 can say (it does not tell "not
// yours" from "never existed"), "forbidden" comes from a socket's refusal, "deleted" from the event.
const GONE_PRECISION = ["missing", "forbidden", "deleted"];

/** The `CHAT_GONE` kind of a failed load or refused subscription, or null when it may pass. */
export function goneKind(failure) {
  if (failure.status === 404 || failure.code === "not_found") return "missing";
  if (failure.status === 403 || failure.code === "forbidden") return "forbidden";
  return null;
}

/** A thread's messages, a composer, and a streamed run rendered token by token. */
export class ChatView {
  /** actions: {send(content), run({chunks, delay_ms})}; a send that throws keeps the text. */
  constructor(root, threadId, actions, { subtitle = "" } = {}) {
    this.threadId = threadId;
    this.actions = actions;
    this.messages = new Map();
    this.stream = null; // the bubble of the run being streamed (or just streamed)
    this.closed = false; // gone, failed or signed out: the composer stays disabled
    this.sending = false;
    this.title = h("h2", { class: "thread-title" }, `Chat ${threadId}`);
    this.agentChip = h("span", { class: "agent-chip badge" }, "…");
    this.list = h("ol", { class: "messages", id: "messages", "aria-live": "polite" });
    this.notice = h("div", { class: "chat-notice", id: "chat-notice", role: "alert", hidden: true });
    this.composer = h("textarea", { id: "composer", rows: 2, placeholder: "Write a message (Enter sends)",
      maxlength: "100000", "aria-label": "message" });
    this.error = h("p", { class: "composer-error", id: "composer-error", role: "alert", hidden: true });
    this.composer.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        this._send();
      }
    });
    this.chunks = h("input", { id: "run-chunks", type: "number", min: "1", max: "100000", value: "24" });
    this.delay = h("input", { id: "run-delay", type: "number", min: "0", max: "10000", value: "15" });
    this.sendButton = h("button", { type: "submit", id: "send", class: "primary" }, "Send");
    this.runButton = h("button", { type: "button", id: "run", class: "run", onclick: () => {
      this._run(() => actions.run({ chunks: Number(this.chunks.value) || 24, delay_ms: Number(this.delay.value) || 0 }),
        "The run did not start");
    } }, "▶ Run");
    this.form = h("form", { class: "composer", onsubmit: (e) => { e.preventDefault(); this._send(); } },
      this.composer,
      h("div", { class: "composer-actions" },
        this.sendButton,
        this.runButton,
        h("label", {}, "chunks ", this.chunks),
        h("label", {}, "delay ms ", this.delay)),
      this.error);
    this.el = h("section", { class: "view chat", dataset: { view: "chat", threadId } },
      h("div", { class: "view-head chat-head" },
        h("a", { href: "#/", class: "back" }, "← Dashboard"), this.title,
        subtitle ? h("p", { class: "muted" }, subtitle) : null, this.agentChip),
      this.list, this.notice, this.form);
    root.replaceChildren(this.el);
  }

  ready() {
    this.el.dataset.ready = "true";
  }

  /** Send the composer's text; it stays there, with the reason next to it, until the send succeeds. */
  async _send() {
    const content = this.composer.value.trim();
    if (!content || this.sending || this.closed) return;
    this.sending = true;
    this.form.dataset.sending = "true";
    this.sendButton.disabled = true;
    this.composer.readOnly = true; // what is being sent is what is on screen
    this._showError(null);
    try {
      await this.actions.send(content);
      this.composer.value = "";
    } catch (error) {
      // a chat that closed meanwhile has its own notice; the text stays in the disabled composer
      if (!this.closed) this._showError(`Not sent: ${error.message}. Your message is still here: press Send to try again.`);
    } finally {
      this.sending = false;
      delete this.form.dataset.sending;
      this.composer.readOnly = false;
      this.sendButton.disabled = this.closed;
    }
  }

  /** Another composer action (a run); its failure shows where the user is looking. */
  _run(action, what) {
    this._showError(null);
    Promise.resolve().then(action).catch((error) => this._showError(`${what}: ${error.message}.`));
  }

  /** The server refused a command of this view (the legacy socket's `error` frame with its message_id). */
  commandFailed(message) {
    this._showError(`The server refused the message: ${message}.`);
  }

  _showError(message) {
    this.error.hidden = !message;
    this.error.textContent = message || "";
  }

  setThread(thread) {
    this.title.textContent = thread.title || `Chat ${thread.id}`;
  }

  setAgent(agent) {
    this.agentChip.textContent = `${agent.name} · ${agent.status}`;
    this.agentChip.dataset.status = agent.status;
  }

  agentGone() {
    this.agentChip.textContent = "agent deleted";
    this.agentChip.dataset.status = "offline";
  }

  /**
   * The chat cannot be used (`kind` of CHAT_GONE): one notice and a disabled composer. Deletion, a
   * refused load and a refused socket or subscription may each report it, in any order: the notice
   * shows the most precise of them (a deletion, then a refusal, then "not found"), never two.
   */
  gone(kind) {
    this.el.dataset.goneReports = String(Number(this.el.dataset.goneReports || 0) + 1);
    const rank = (k) => GONE_PRECISION.indexOf(k);
    if (this.el.dataset.gone && rank(kind) <= rank(this.el.dataset.gone)) return;
    if (this.closed && !this.el.dataset.gone) return; // failed or signed out: that notice stays
    this.el.dataset.gone = kind;
    this._close(CHAT_GONE[kind]);
  }

  /** The chat could not be loaded for a reason that may pass (server error, network): say so, offer a reload. */
  failed(message) {
    if (this.closed) return;
    this.el.dataset.failed = "true";
    this._close(`This chat could not be loaded: ${message}.`,
      h("button", { type: "button", class: "reload", onclick: () => location.reload() }, "Reload"));
  }

  /** The page was refused (signed out, origin not allowed): its notice explains; the chat stops taking input. */
  signedOut() {
    if (this.closed) return;
    this.el.dataset.signedOut = "true";
    this.closed = true;
    this._disable();
  }

  _close(text, ...extra) {
    this.closed = true;
    this.notice.replaceChildren(h("span", { class: "text" }, text), " ",
      h("a", { href: "#/", class: "notice-back" }, "Back to the Dashboard"), ...extra);
    this.notice.hidden = false;
    this._showError(null);
    this._disable();
  }

  _disable() {
    for (const control of [this.composer, this.sendButton, this.runButton, this.chunks, this.delay]) {
      control.disabled = true;
    }
  }

  /** Merge a REST snapshot (or the legacy `thread_history`). */
  setMessages(messages, { replace = false } = {}) {
    if (replace) {
      for (const li of [...this.list.querySelectorAll("li.msg")]) {
        if (li === this.stream && !li.dataset.id) continue; // a run still streaming stays
        if (li === this.stream) this.stream = null;
        li.remove();
      }
      this.messages.clear();
    }
    for (const message of messages) this.upsertMessage(message);
  }

  upsertMessage(message) {
    if (message.thread_id != null && message.thread_id !== this.threadId) return;
    if (this.messages.has(message.id)) return;
    this.messages.set(message.id, message);
    const stream = this.stream;
    if (message.role === "assistant" && stream && !stream.dataset.id && stream.dataset.state !== "streaming") {
      // the stored reply of the run just streamed: the bubble becomes that message
      stream.dataset.id = message.id;
      stream.title = message.timestamp;
      const body = stream.querySelector(".body");
      if (body.textContent !== message.content) {
        body.textContent = message.content;
        stream.dataset.repaired = "true";
      }
      stream.dataset.state = "final";
      stream.classList.remove("streaming");
      return;
    }
    const li = this._bubble(message.role, message.content);
    li.dataset.id = message.id;
    li.title = message.timestamp || "";
    const after = [...this.list.children].find((item) => item.dataset.id && Number(item.dataset.id) > message.id);
    this.list.insertBefore(li, after || (stream && !stream.dataset.id ? stream : null));
    this._scroll();
  }

  _bubble(role, content) {
    return h("li", { class: `msg ${role}`, dataset: { role } },
      h("span", { class: "role" }, role), h("div", { class: "body" }, content));
  }

  /** The thread's latest run as the snapshot holds it (`RunOut`), so a view loaded mid-run shows it all. */
  showRun(run) {
    if (!run || run.state === "stored") return; // the reply is among the messages
    this.streamStart();
    this.stream.querySelector(".body").append(run.content);
    this.stream.dataset.chunks = String(run.chunks);
    if (run.state === "done") this.streamEnd();
    if (run.state === "error") this.streamError("the run failed");
  }

  streamStart() {
    if (this.stream && this.stream.dataset.state === "streaming") this.stream.dataset.state = "interrupted";
    this.stream = this._bubble("assistant", "");
    this.stream.classList.add("streaming");
    Object.assign(this.stream.dataset, { stream: "true", state: "streaming", chunks: "0" });
    this.list.append(this.stream);
    this._scroll();
  }

  streamChunk(content) {
    if (!this.stream || this.stream.dataset.state !== "streaming") {
      this.streamStart(); // joined mid-run: show what is left
      this.stream.dataset.partial = "true";
    }
    this.stream.querySelector(".body").append(content);
    this.stream.dataset.chunks = String(Number(this.stream.dataset.chunks) + 1);
    this._scroll();
  }

  streamEnd() {
    if (this.stream && this.stream.dataset.state === "streaming") this.stream.dataset.state = "done";
  }

  streamError(error) {
    if (!this.stream) return;
    this.stream.dataset.state = "error";
    this.stream.append(h("div", { class: "stream-error" }, error));
  }

  /** The view refetched after a lost history: a stream in flight can no longer be trusted. */
  streamInterrupted() {
    if (this.stream && this.stream.dataset.state === "streaming") this.stream.dataset.state = "interrupted";
  }

  _scroll() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}

// -- connection badge -----------------------------------------------------------------------------

export function connectionBadge() {
  return h("span", { id: "conn", class: "conn", dataset: { state: "idle" } }, "○ idle");
}
