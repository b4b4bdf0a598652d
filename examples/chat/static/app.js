// The demo app on the unified protocol: ONE wsClient for the page's lifetime; the Dashboard and
// Chat views subscribe to topics on it and unsubscribe when the router unmounts them.
//
// Every view loads the same way (docs/protocol.md, "Snapshots"): a REST snapshot that carries the
// positions of the view's topics, read by the server before the snapshot; then `subscribe(topic,
// handler, { since, contains })`: the server replays exactly what happened after the positions,
// and `contains` recognises the few events the snapshot already holds (by id or version).

import { createWsClient } from "./wsclient.js";
import {
  api, ChatView, DashboardView, dashboardActions, goneKind, pageRefused, REFUSAL_LABELS, sessionToken, snapshot,
  startRouter,
} from "./ui.js";

const client = createWsClient({
  getToken: sessionToken, // ?token= on the page URL, or the demo user's on a development server
  onResync: (topic) => console.info(`wsclient: ${topic} could not be replayed; the view refetches`),
  // 4401 / 4403: the client has stopped for good; the page says why and how to sign in
  onRefused: (refusal) => pageRefused(refusal),
});
window.__app = { client }; // for the console and the browser tests

// -- top bar: connection state and a live summary of the agents (an app-wide subscription) ----------

const badge = document.getElementById("conn");
const renderBadge = () => {
  const { state, stats, refusal } = client;
  badge.dataset.connects = String(stats.connects);
  if (refusal) {
    // final, unlike "reconnecting": nothing will change until the user signs in again
    badge.dataset.state = "refused";
    badge.dataset.refusal = refusal.kind;
    badge.textContent = `○ ${REFUSAL_LABELS[refusal.kind] || "refused"}`;
    badge.title = `the server closed the socket with ${refusal.code} (${refusal.reason})`;
    return;
  }
  const icon = state === "open" ? "●" : "○";
  badge.dataset.state = state;
  badge.textContent = `${icon} ${state} · 1 socket · ${stats.reconnects} reconnect${stats.reconnects === 1 ? "" : "s"}`;
};
client.addEventListener("statechange", renderBadge);
client.addEventListener("refused", renderBadge);
renderBadge();

/** A load's failure that is not the view's to explain: a 401 is the page's sign-in notice. */
const signedOut = (error) => error.status === 401;

/**
 * Whether a view holding `agents` (id -> agent) already reflects an event of the `agents` topic:
 * the `contains` of every subscription to it.
 */
const agentsHold = (agents) => (event) => {
  const known = agents.get(event.data.id);
  if (event.type === "agent_deleted") return !known;
  return Boolean(known) && event.data.version != null && known.version >= event.data.version;
};

const summary = new Map();
const summaryEl = document.getElementById("summary");
const renderSummary = () => {
  const running = [...summary.values()].filter((a) => a.status === "running").length;
  summaryEl.textContent = `${summary.size} agent${summary.size === 1 ? "" : "s"} · ${running} running`;
};
let offSummary = null;
const loadSummary = async () => {
  const { data: agents, positions } = await snapshot("/api/agents");
  summary.clear();
  for (const agent of agents) summary.set(agent.id, agent);
  renderSummary();
  if (offSummary) offSummary();
  offSummary = client.subscribe("agents", (event) => {
    if (event.type === "agent_deleted") summary.delete(event.data.id);
    else summary.set(event.data.id, event.data);
    renderSummary();
  }, {
    since: positions.agents,
    contains: agentsHold(summary),
    onResync: () => loadSummary().catch(console.error),
  });
};
loadSummary().catch((error) => {
  if (!signedOut(error)) console.error(error);
});

// -- views ----------------------------------------------------------------------------------------

const root = document.getElementById("view");

function mountDashboard() {
  let disposed = false;
  let loaded = false;
  let live = false;
  const view = new DashboardView(root, dashboardActions(() => view),
    { subtitle: "Live over the one socket: topic agents." });
  const markReady = () => {
    if (loaded && live && !disposed) view.ready();
  };
  let offAgents = null;
  const load = async (replace) => {
    // The chats of each agent are read when the view mounts (thread events travel on thread: and
    // agent: topics, which the dashboard does not hold).
    const [{ data: agents, positions }, threads] = await Promise.all([snapshot("/api/agents"), api("GET", "/api/threads")]);
    if (disposed) return;
    view.setAgents(agents, { replace });
    view.setThreads(threads, { replace });
    loaded = true;
    if (offAgents) offAgents();
    live = false;
    offAgents = client.subscribe("agents", (event) => {
      if (event.type === "agent_deleted") view.removeAgent(event.data.id);
      else view.upsertAgent(event.data);
    }, {
      since: positions.agents,
      contains: agentsHold(view.agents),
      onSubscribed: () => {
        live = true;
        markReady();
      },
      onResync: () => load(true).catch(console.error),
    });
  };
  load(false).catch((error) => {
    if (disposed) return;
    if (signedOut(error)) view.signedOut();
    else view.failed(error.message);
  });
  return () => {
    disposed = true;
    if (offAgents) offAgents();
  };
}

function mountChat(threadId) {
  let disposed = false;
  let live = false;
  let offThread = null;
  let offAgent = null;
  const view = new ChatView(root, threadId, {
    send: async (content) => view.upsertMessage(await api("POST", `/api/threads/${threadId}/messages`, { content })),
    run: (options) => api("POST", `/api/threads/${threadId}/run`, options),
  }, { subtitle: `topic thread:${threadId} on the one socket` });
  // What the view holds, to recognise the events its snapshot already contains.
  const held = { thread: null, agent: null, run: null };
  const sameRun = (data) => held.run && held.run.run_id === data.run_id;
  // Run ids sort by start: a run older than the one the view shows is over, its reply stored.
  const olderRun = (data) => held.run && data.run_id < held.run.run_id;
  const threadHolds = (event) => {
    const data = event.data;
    switch (event.type) {
      case "message_created": return view.messages.has(data.id);
      case "stream_start": return sameRun(data) || olderRun(data);
      case "stream_chunk": return olderRun(data) || (sameRun(data) && data.index < held.run.chunks);
      case "stream_end": case "stream_error": return olderRun(data) || (sameRun(data) && held.run.state !== "streaming");
      case "thread_created": case "thread_updated": return held.thread.version >= data.version;
      default: return false;
    }
  };
  const onThreadEvent = (event) => {
    const data = event.data;
    switch (event.type) {
      case "message_created": view.upsertMessage(data); break;
      case "stream_start":
        held.run = { run_id: data.run_id, chunks: 0, state: "streaming" };
        view.streamStart();
        break;
      case "stream_chunk":
        if (sameRun(data)) held.run.chunks = data.index + 1;
        view.streamChunk(data.content);
        break;
      case "stream_end":
        if (sameRun(data)) held.run.state = "done";
        view.streamEnd();
        break;
      case "stream_error":
        if (sameRun(data)) held.run.state = "error";
        view.streamError(data.error);
        break;
      case "thread_updated":
        held.thread = data;
        view.setThread(data);
        break;
      case "thread_deleted": close("deleted"); break;
      default: break;
    }
  };
  const onAgentEvent = (event) => {
    if (event.type === "agent_deleted") view.agentGone();
    else if (event.type.startsWith("agent_")) {
      held.agent = event.data;
      view.setAgent(event.data);
    }
  };
  const agentHolds = (event) => event.type.startsWith("agent_") && event.type !== "agent_deleted"
    && held.agent.version >= event.data.version;
  /** The chat is gone for good: one notice, and no more events (nor resubscribes after a reconnect). */
  const close = (kind) => {
    view.gone(kind);
    if (offThread) offThread();
    if (offAgent) offAgent();
    offThread = offAgent = null;
  };
  const refused = (frame) => {
    const kind = goneKind(frame);
    if (kind) close(kind);
    else console.warn(`wsclient: thread:${threadId} refused: ${frame.message}`); // e.g. rate_limited: retried
  };
  const load = async (again) => {
    const { data, positions } = await snapshot(`/api/threads/${threadId}/view`);
    if (disposed) return;
    if (again) view.streamInterrupted();
    Object.assign(held, { thread: data.thread, agent: data.agent, run: data.run });
    view.setThread(data.thread);
    view.setAgent(data.agent);
    view.setMessages(data.messages, { replace: again });
    if (!again) view.showRun(data.run);
    // Subscribe in the same tick the snapshot is applied, from where it was read.
    if (offThread) offThread();
    if (offAgent) offAgent();
    live = false;
    offThread = client.subscribe(`thread:${threadId}`, onThreadEvent, {
      since: positions[`thread:${threadId}`],
      contains: threadHolds,
      onSubscribed: () => {
        live = true;
        if (!disposed) view.ready();
      },
      onResync: () => load(true).catch(failed),
      onError: refused,
    });
    offAgent = client.subscribe(`agent:${data.agent.id}`, onAgentEvent, {
      since: positions[`agent:${data.agent.id}`],
      contains: agentHolds,
    });
  };
  function failed(error) {
    if (disposed) return;
    if (signedOut(error)) view.signedOut();
    else if (goneKind(error)) close(goneKind(error));
    else view.failed(error.message);
  }
  load(false).catch(failed);
  return () => {
    disposed = true;
    if (offThread) offThread();
    if (offAgent) offAgent();
  };
}

startRouter((route) => (route.name === "chat" ? mountChat(route.id) : mountDashboard()));
