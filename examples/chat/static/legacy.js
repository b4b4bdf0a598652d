// The demo app as it was before the refactor: every view opens its own socket on the legacy path
// (`/api/ws?agent_id=ID` for the dashboard, `/api/ws?thread_id=ID` for a chat) and closes it when
// the user navigates away. Flat legacy frames (thread_history, thread_message, stream_*, agent_*),
// no recovery: whatever was sent while no socket was open is simply not seen.

import { api, ChatView, DashboardView, dashboardActions, sessionToken, startRouter } from "./ui.js";

const badge = document.getElementById("conn");
const socketUrl = document.getElementById("socket-url");
let opened = 0;
let messageIds = 0;
let current = null; // the socket of the view on screen

function renderBadge(ws) {
  if (ws !== current) return; // a previous view's socket finishing its close
  const state = ws ? ["connecting", "open", "closing", "closed"][ws.readyState] : "none";
  badge.dataset.state = state;
  badge.dataset.opened = String(opened);
  badge.textContent = `${state === "open" ? "●" : "○"} ${state} · ${opened} socket${opened === 1 ? "" : "s"} opened`;
}

/** One socket for one view: the old frontend's `new WebSocket(...)` in every view. */
function openViewSocket(query, token, onFrame) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams(query);
  if (token) params.set("token", token);
  const ws = new WebSocket(`${scheme}//${location.host}/api/ws?${params}`);
  opened += 1;
  current = ws;
  socketUrl.textContent = `/api/ws?${new URLSearchParams(query)}`;
  ws.onopen = () => renderBadge(ws);
  ws.onclose = () => renderBadge(ws);
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
      ws.addEventListener("open", () => {
        if (!disposed) view.ready();
      });
    } else if (!agents.length) {
      view.ready();
    }
  }

  load().catch((error) => console.error(error));
  return () => {
    disposed = true;
    closeViewSocket(ws);
  };
}

function mountChat(threadId) {
  let disposed = false;
  let ws = null;
  const view = new ChatView(root, threadId, {
    // the old chat sent messages over its socket; the server answers with `thread_message`
    send: (content) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) throw new Error("not connected");
      ws.send(JSON.stringify({ type: "send_message", thread_id: threadId, content, message_id: `m${++messageIds}` }));
    },
    run: (options) => api("POST", `/api/threads/${threadId}/run`, options),
  }, { subtitle: `its own socket: /api/ws?thread_id=${threadId}` });
  const onFrame = (frame) => {
    if (frame.thread_id != null && frame.thread_id !== threadId) return;
    switch (frame.type) {
      case "thread_history":
        view.setMessages(frame.messages, { replace: true });
        view.ready();
        break;
      case "thread_message": view.upsertMessage(frame.message); break;
      case "stream_start": view.streamStart(); break;
      case "stream_chunk": view.streamChunk(frame.content); break;
      case "stream_end": view.streamEnd(); break;
      case "stream_error": view.streamError(frame.error); break;
      case "error": view.gone(frame.error); break;
      default: break;
    }
  };
  (async () => {
    const token = await sessionToken();
    if (!disposed) ws = openViewSocket({ thread_id: threadId }, token, onFrame);
    const thread = await api("GET", `/api/threads/${threadId}`);
    if (disposed) return;
    view.setThread(thread);
    const agent = await api("GET", `/api/agents/${thread.agent_id}`);
    if (!disposed) view.setAgent(agent);
  })().catch((error) => view.gone(error.message));
  return () => {
    disposed = true;
    closeViewSocket(ws);
  };
}

renderBadge(null);
startRouter((route) => (route.name === "chat" ? mountChat(route.id) : mountDashboard()));
