// The demo app on the unified protocol: ONE wsClient for the page's lifetime; the Dashboard and
// Chat views subscribe to topics on it and unsubscribe when the router unmounts them.

import { createWsClient } from "./wsclient.js";
import { api, ChatView, DashboardView, dashboardActions, sessionToken, startRouter } from "./ui.js";

const client = createWsClient({
  getToken: sessionToken, // ?token= on the page URL, or the demo user's on a development server
  onResync: (topic) => console.info(`wsclient: ${topic} could not be replayed; the view refetches`),
});
window.__app = { client }; // for the console and the browser tests

// -- top bar: connection state and a live summary of the agents (an app-wide subscription) ----------

const badge = document.getElementById("conn");
const renderBadge = () => {
  const { state, stats } = client;
  const icon = state === "open" ? "●" : "○";
  badge.dataset.state = state;
  badge.dataset.connects = String(stats.connects);
  badge.textContent = `${icon} ${state} · 1 socket · ${stats.reconnects} reconnect${stats.reconnects === 1 ? "" : "s"}`;
};
client.addEventListener("statechange", renderBadge);
renderBadge();

const summary = new Map();
const summaryEl = document.getElementById("summary");
const renderSummary = () => {
  const running = [...summary.values()].filter((a) => a.status === "running").length;
  summaryEl.textContent = `${summary.size} agent${summary.size === 1 ? "" : "s"} · ${running} running`;
};
const loadSummary = async () => {
  const agents = await api("GET", "/api/agents");
  summary.clear();
  for (const agent of agents) summary.set(agent.id, agent);
  renderSummary();
};
let summaryLoaded = false;
client.subscribe("agents", (event) => {
  if (event.type === "agent_deleted") summary.delete(event.data.id);
  else summary.set(event.data.id, event.data);
  renderSummary();
}, {
  onSubscribed: () => {
    if (!summaryLoaded) loadSummary().catch(console.error);
    summaryLoaded = true;
  },
  onResync: () => loadSummary().catch(console.error),
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
  const load = async (replace) => {
    const [agents, threads] = await Promise.all([api("GET", "/api/agents"), api("GET", "/api/threads")]);
    if (disposed) return;
    view.setAgents(agents, { replace });
    view.setThreads(threads, { replace });
    loaded = true;
    markReady();
  };
  const offAgents = client.subscribe("agents", (event) => {
    if (event.type === "agent_deleted") view.removeAgent(event.data.id);
    else view.upsertAgent(event.data);
  }, {
    onSubscribed: () => {
      live = true;
      markReady();
    },
    onResync: () => load(true).catch(console.error),
  });
  // The chats of each agent are read when the view mounts (thread events travel on thread: and
  // agent: topics, which the dashboard does not hold).
  load(false).catch((error) => console.error(error));
  return () => {
    disposed = true;
    offAgents();
  };
}

function mountChat(threadId) {
  let disposed = false;
  let loaded = false;
  let live = false;
  let offAgent = null;
  const view = new ChatView(root, threadId, {
    send: async (content) => view.upsertMessage(await api("POST", `/api/threads/${threadId}/messages`, { content })),
    run: (options) => api("POST", `/api/threads/${threadId}/run`, options),
  }, { subtitle: `topic thread:${threadId} on the one socket` });
  const markReady = () => {
    if (loaded && live && !disposed) view.ready();
  };
  const loadMessages = async (replace) => {
    const messages = await api("GET", `/api/threads/${threadId}/messages`);
    if (!disposed) view.setMessages(messages, { replace });
  };
  const offThread = client.subscribe(`thread:${threadId}`, (event) => {
    const data = event.data;
    switch (event.type) {
      case "message_created": view.upsertMessage(data); break;
      case "stream_start": view.streamStart(); break;
      case "stream_chunk": view.streamChunk(data.content); break;
      case "stream_end": view.streamEnd(); break;
      case "stream_error": view.streamError(data.error); break;
      case "thread_updated": view.setThread(data); break;
      case "thread_deleted": view.gone(`Chat ${threadId} was deleted.`); break;
      default: break;
    }
  }, {
    onSubscribed: () => {
      live = true;
      markReady();
    },
    onResync: () => {
      view.streamInterrupted();
      loadMessages(true).catch(console.error);
    },
    onError: (frame) => view.gone(frame.message),
  });
  (async () => {
    const thread = await api("GET", `/api/threads/${threadId}`);
    if (disposed) return;
    view.setThread(thread);
    offAgent = client.subscribe(`agent:${thread.agent_id}`, (event) => {
      if (event.type === "agent_deleted") view.agentGone();
      else if (event.type.startsWith("agent_")) view.setAgent(event.data);
    });
    const [agent] = await Promise.all([api("GET", `/api/agents/${thread.agent_id}`), loadMessages(false)]);
    if (disposed) return;
    view.setAgent(agent);
    loaded = true;
    markReady();
  })().catch((error) => view.gone(error.message));
  return () => {
    disposed = true;
    offThread();
    if (offAgent) offAgent();
  };
}

startRouter((route) => (route.name === "chat" ? mountChat(route.id) : mountDashboard()));
