// The demo app as it was before the refactor: every view opens its own socket on the legacy path
// (`/api/ws?agent_id=ID` for the dashboard, `/api/ws?thread_id=ID` for a chat) and closes it when
// the user navigates away. Flat legacy frames (thread_history, thread_message, stream_*, agent_*),
// no recovery: whatever was sent while no socket was open is simply not seen.
//
// The old page never reconnected either. What it lacked is knowing when the server said no for
// good: a socket closed with 4401 (no valid token) or 4403 "origin not allowed" would be refused
// again, so the page says why and opens no further socket; REST's 401 means the same.

import {
  api, ChatView, DashboardView, dashboardActions, goneKind, pageRefusal, pageRefused, REFUSAL_LABELS, session,
  sessionToken, startRouter,
} from "./ui.js";

const UNAUTHENTICATED = 4401; // no valid token: every socket of this page would be refused
const FORBIDDEN = 4403; // with "origin not allowed": every socket; otherwise this view's target only
const ORIGIN_REFUSED = "origin not allowed";
const SEND_TIMEOUT_MS = 10_000; // a send the server neither stored nor refused by then failed

const badge = document.getElementById("conn");
const socketUrl = document.getElementById("socket-url");
let opened = 0;
let messageIds = 0;
let current = null; // the socket of the view on screen

function renderBadge(ws) {
  if (ws !== current) return; // a previous view's socket finishing its close
  badge.dataset.opened = String(opened);
  const sockets = `${opened} socket${opened === 1 ? "" : "s"} opened`;
  const refusal = pageRefusal();
  if (refusal) {
    badge.dataset.state = "refused";
    badge.dataset.refusal = refusal.kind;
    badge.textContent = `○ ${REFUSAL_LABELS[refusal.kind]} · ${sockets}`;
    return;
  }
  const state = ws ? ["connecting", "open", "closing", "closed"][ws.readyState] : "none";
  badge.dataset.state = state;
  badge.textContent = `${state === "open" ? "●" : "○"} ${state} · ${sockets}`;
}
session.addEventListener("refused", () => renderBadge(current));

/** Whether a close means the server refuses this page's sockets for good (then recorded). */
function refusedForGood(event) {
  if (event.code === UNAUTHENTICATED) {
    pageRefused({ kind: "unauthenticated", code: event.code, reason: event.reason });
    return true;
  }
  if (event.code === FORBIDDEN && event.reason === ORIGIN_REFUSED) {
    pageRefused({ kind: "forbidden", code: event.code, reason: event.reason });
    return true;
  }
  return false;
}

/**
 * One socket for one view: the old frontend's `new WebSocket(...)` in every view. None once the
 * server refused the page for good (it would only be refused again). `onClose(event)` is told
 * how the view's socket ended when the server closed it.
 */
function openViewSocket(query, token, onFrame, onClose = () => {}) {
  if (pageRefusal()) return null;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams(query);
  if (token) params.set("token", token);
  const ws = new WebSocket(`${scheme}//${location.host}/api/ws?${params}`);
  opened += 1;
  current = ws;
  socketUrl.textContent = `/api/ws?${new URLSearchParams(query)}`;
  ws.onopen = () => renderBadge(ws);
  ws.onclose = (event) => {
    refusedForGood(event);
    if (ws === current) onClose(event);
    renderBadge(ws);
  };
  ws.onmessage = (message) => {
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    onFrame(frame);
  };
  renderBadge(ws);
  return ws;
}

function closeViewSocket(ws) {
  if (!ws) return;
  ws.onmessage = null;
  ws.onclose = () => renderBadge(ws); // closed by the page: nothing to report
  ws.close(1000, "view closed");
  renderBadge(ws);
}

/** A flat agent frame back to the agent object (its fields sit next to `type`). */
function agentOf(frame) {
  const { type: _type, ...fields } = frame;
  return { ...fields, id: fields.id ?? fields.agent_id };
}

const root = document.getElementById("view");

function mountDashboard() {
  let disposed = false;
  let ws = null;
  const view = new DashboardView(root, dashboardActions(() => view, {
    // the old dashboard re-read the list after its own changes: it had no live feed of new agents
    create: async (name) => {
      await api("POST", "/api/agents", { name });
      await load();
    },
  }), { subtitle: "Legacy: one socket per view, following the first agent only." });

  const onFrame = (frame) => {
    switch (frame.type) {
      case "agent_updated":
      case "agent_status_changed":
        view.upsertAgent(agentOf(frame));
        break;
      case "agent_deleted":
        view.removeAgent(frame.id ?? frame.agent_id);
        break;
      case "thread_created":
      case "thread_updated": {
        const { type: _type, ...thread } = frame;
        view.upsertThread({ ...thread, id: thread.id ?? thread.thread_id });
        break;
      }
      case "thread_deleted":
        view.removeThread(frame.id ?? frame.thread_id);
        break;
      default:
        break;
    }
  };

  async function load() {
    const [agents, threads, token] = await Promise.all([
      api("GET", "/api/agents"), api("GET", "/api/threads"), sessionToken(),
    ]);
    if (disposed) return;
    view.setAgents(agents, { replace: true });
    view.setThreads(threads, { replace: true });
    if (!ws && agents.length) {
      ws = openViewSocket({ agent_id: agents[0].id }, token, onFrame);
      ws?.addEventListener("open", () => {
        if (!disposed) view.ready();
      });
    } else if (!agents.length) {
      view.ready();
    }
  }

  load().catch((error) => {
    if (disposed) return;
    if (error.status === 401) view.signedOut(); // the page's notice says how to sign in
    else view.failed(error.message);
  });
  return () => {
    disposed = true;
    closeViewSocket(ws);
  };
}

function mountChat(threadId) {
  let disposed = false;
  let ws = null;
  // The old protocol confirms a send only by broadcasting the stored message (`thread_message`) or
  // by an `error` carrying the command's message_id: until one of them, the send is pending (and
  // the composer keeps its text). message_id -> {content, resolve, reject, timer}
  const pending = new Map();
  const settle = (id, error) => {
    const send = pending.get(id);
    if (!send) return;
    pending.delete(id);
    clearTimeout(send.timer);
    if (error) send.reject(error);
    else send.resolve();
  };
  const view = new ChatView(root, threadId, {
    // the old chat sent messages over its socket; the server answers with `thread_message`
    send: (content) => new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error("this view's socket is not open");
      const id = `m${++messageIds}`;
      const timer = setTimeout(() => settle(id, new Error("the server did not confirm it")), SEND_TIMEOUT_MS);
      pending.set(id, { content, resolve, reject, timer });
      ws.send(JSON.stringify({ type: "send_message", thread_id: threadId, content, message_id: id }));
    }),
    run: (options) => api("POST", `/api/threads/${threadId}/run`, options),
  }, { subtitle: `its own socket: /api/ws?thread_id=${threadId}` });
  const onFrame = (frame) => {
    if (frame.thread_id != null && frame.thread_id !== threadId) return;
    switch (frame.type) {
      case "thread_history":
        view.setMessages(frame.messages, { replace: true });
        view.ready();
        break;
      case "thread_message": {
        view.upsertMessage(frame.message);
        const mine = [...pending].find(([, send]) => frame.message.role === "user" && send.content === frame.message.content);
        if (mine) settle(mine[0], null);
        break;
      }
      case "stream_start": view.streamStart(); break;
      case "stream_chunk": view.streamChunk(frame.content); break;
      case "stream_end": view.streamEnd(); break;
      case "stream_error": view.streamError(frame.error); break;
      // with a message_id, a command was refused; without, the view itself: its close says why (below)
      case "error":
        if (pending.has(frame.message_id)) settle(frame.message_id, new Error(frame.error));
        else if (frame.message_id != null) view.commandFailed(frame.error);
        // this socket is not told of its thread's deletion (the agent's is): a refused send is how it learns
        if (frame.message_id != null && / not found$/.test(frame.error)) view.gone("deleted");
        break;
      default: break;
    }
  };
  // How the server ended this view's socket: the page refused, or this chat not found (1008 with the
  // refusal's text as its reason) or not the user's (4403). Other closes just leave it closed.
  const onClose = (event) => {
    for (const id of [...pending.keys()]) settle(id, new Error("the socket closed before the server confirmed it"));
    if (disposed) return;
    if (pageRefusal()) view.signedOut();
    else if (event.code === FORBIDDEN) view.gone("forbidden");
    else if (event.code === 1008 && / not found$/.test(event.reason)) view.gone("missing");
  };
  const failed = (error) => {
    if (disposed) return;
    if (error.status === 401) view.signedOut();
    else if (goneKind(error)) view.gone(goneKind(error));
    else view.failed(error.message);
  };
  (async () => {
    const token = await sessionToken();
    if (!disposed) ws = openViewSocket({ thread_id: threadId }, token, onFrame, onClose);
    if (!ws && pageRefusal()) view.signedOut();
    const thread = await api("GET", `/api/threads/${threadId}`);
    if (disposed) return;
    view.setThread(thread);
    const agent = await api("GET", `/api/agents/${thread.agent_id}`);
    if (!disposed) view.setAgent(agent);
  })().catch(failed);
  return () => {
    disposed = true;
    for (const id of [...pending.keys()]) settle(id, new Error("the chat was closed"));
    closeViewSocket(ws);
  };
}

renderBadge(null);
startRouter((route) => (route.name === "chat" ? mountChat(route.id) : mountDashboard()));
