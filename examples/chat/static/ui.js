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

/** JSON over REST with the page's token; throws an Error carrying the server's `detail`. */
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

async function apiResponse(method, path, body) {
  const headers = { accept: "application/json" };
  const token = await sessionToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((data && data.detail) || `${method} ${path}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return { data, response };
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

/** Live list of agents with status, their chats, and create / rename / status / delete. */
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
    const form = h("form", { class: "create", id: "create-agent", onsubmit: (e) => {
      e.preventDefault();
      const value = name.value.trim();
      if (!value) return;
      name.value = "";
      this._run(() => actions.create(value));
    } }, name, h("button", { type: "submit", class: "primary" }, "Create agent"));
    this.el = h("section", { class: "view dashboard", dataset: { view: "dashboard" } },
      h("div", { class: "view-head" }, h("h2", {}, "Agents"), subtitle ? h("p", { class: "muted" }, subtitle) : null),
      form, this.empty, this.list);
    root.replaceChildren(this.el);
  }

  ready() {
    this.el.dataset.ready = "true";
  }

  _run(action) {
    Promise.resolve().then(action).catch((error) => flash(this.el, error.message));
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
    this.empty.hidden = this.agents.size > 0;
  }

  _row(id) {
    const actions = this.actions;
    const nameSpan = h("span", { class: "agent-name" });
    const select = h("select", { class: "status-select", "aria-label": "status", onchange: () => {
      this._run(() => actions.setStatus(id, select.value));
    } }, STATUSES.map((s) => h("option", { value: s }, s)));
    const rename = h("button", { type: "button", class: "edit", onclick: () => this._editName(id, nameSpan) }, "Rename");
    const remove = h("button", { type: "button", class: "delete danger", onclick: () => {
      this._run(() => actions.remove(id));
    } }, "Delete");
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

/** A thread's messages, a composer, and a streamed run rendered token by token. */
export class ChatView {
  /** actions: {send(content), run({chunks, delay_ms})} */
  constructor(root, threadId, actions, { subtitle = "" } = {}) {
    this.threadId = threadId;
    this.actions = actions;
    this.messages = new Map();
    this.stream = null; // the bubble of the run being streamed (or just streamed)
    this.title = h("h2", { class: "thread-title" }, `Chat ${threadId}`);
    this.agentChip = h("span", { class: "agent-chip badge" }, "…");
    this.list = h("ol", { class: "messages", id: "messages", "aria-live": "polite" });
    const composer = h("textarea", { id: "composer", rows: 2, placeholder: "Write a message (Enter sends)",
      maxlength: "100000" });
    const send = () => {
      const content = composer.value.trim();
      if (!content) return;
      composer.value = "";
      this._run(() => actions.send(content));
    };
    composer.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        send();
      }
    });
    this.chunks = h("input", { id: "run-chunks", type: "number", min: "1", max: "100000", value: "24" });
    this.delay = h("input", { id: "run-delay", type: "number", min: "0", max: "10000", value: "15" });
    const runButton = h("button", { type: "button", id: "run", class: "run", onclick: () => {
      this._run(() => actions.run({ chunks: Number(this.chunks.value) || 24, delay_ms: Number(this.delay.value) || 0 }));
    } }, "▶ Run");
    this.el = h("section", { class: "view chat", dataset: { view: "chat", threadId } },
      h("div", { class: "view-head chat-head" },
        h("a", { href: "#/", class: "back" }, "← Dashboard"), this.title,
        subtitle ? h("p", { class: "muted" }, subtitle) : null, this.agentChip),
      this.list,
      h("form", { class: "composer", onsubmit: (e) => { e.preventDefault(); send(); } },
        composer,
        h("div", { class: "composer-actions" },
          h("button", { type: "submit", id: "send", class: "primary" }, "Send"),
          runButton,
          h("label", {}, "chunks ", this.chunks),
          h("label", {}, "delay ms ", this.delay))));
    root.replaceChildren(this.el);
  }

  ready() {
    this.el.dataset.ready = "true";
  }

  _run(action) {
    Promise.resolve().then(action).catch((error) => flash(this.el, error.message));
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

  gone(message) {
    this.el.dataset.gone = "true";
    flash(this.el, message || "This chat no longer exists.");
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
