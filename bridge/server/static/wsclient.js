// wsclient.js: the browser client of wsmigrate's unified WebSocket protocol (docs/protocol.md).
//
// One socket for the application's lifetime. Views subscribe to the application's topics
// ("board:6f1c…", "boards") and get every event of them, across reconnects, exactly once:
//
//   import { createWsClient } from "/static/wsclient.js";
//   const client = createWsClient({ onResync: (topic) => refetch(topic) });
//   const off = client.subscribe("board:6f1c…", (event) => render(event));
//   off(); // the last handler of a topic leaving sends `unsubscribe`
//
// A view that loads its state over REST follows it live from where the snapshot stood
// (docs/protocol.md, "Snapshots"): the server reads the topic's position before the snapshot and
// returns it; the view subscribes `since` it and recognises what the snapshot already holds:
//
//   const { tasks, positions } = await (await fetch(`/api/boards/${id}`)).json();
//   client.subscribe(`board:${id}`, apply, { since: positions[`board:${id}`],
//                                           contains: (event) => hasVersion(event) });
//
// Plain ES module, no dependencies, no build step. Types: wsclient.d.ts.

/** Connection states, in the order a healthy client goes through them. */
export const State = Object.freeze({
  IDLE: "idle", // created, start() not called yet
  CONNECTING: "connecting", // a socket is being opened
  OPEN: "open", // the socket is open; subscriptions are (re)sent
  RECONNECTING: "reconnecting", // waiting for the backoff timer before the next attempt
  CLOSED: "closed", // close() was called: final, no reconnect
});

const DEFAULTS = Object.freeze({
  path: "/api/ws",
  backoffInitialMs: 250,
  backoffMaxMs: 10_000,
  backoffMinMs: 100,
  stableAfterMs: 5_000,
  maxQueue: 100,
  dedupSize: 2_000,
  keepaliveMs: 30_000,
  pongTimeoutMs: 10_000,
  pingTimeoutMs: 10_000,
});

// Close code the client uses when it drops a socket it considers dead (private range).
const CLIENT_KEEPALIVE_CLOSE = 4000;

/**
 * Close codes by which the server refuses a connection for good (docs/protocol.md, "Limits and
 * close codes"): retrying cannot help until the user signs in again or the page is served from an
 * allowed origin, so the client stops and reports `refused` instead of reconnecting forever.
 * (4429, too many connections, is not among them: it passes when other tabs close.)
 */
export const REFUSALS = Object.freeze({
  4401: "unauthenticated", // no valid token: sign in
  4403: "forbidden", // the page's origin is not allowed to open sockets
});

/**
 * The topics an event is addressed to: its `topic`, and for an event of several topics its
 * `topics` list (docs/protocol.md). The server delivers an event once per connection, on the first
 * of these topics the connection subscribed to; the client hands it to the handlers of every
 * subscribed topic it addresses.
 */
export function topicsOf(event) {
  const topics = [];
  for (const topic of [event.topic, ...(Array.isArray(event.topics) ? event.topics : [])]) {
    if (topic && !topics.includes(topic)) topics.push(topic);
  }
  return topics;
}

/**
 * Where an event stands on each topic it addresses: `{topic: {epoch, seq, event_id}}`. An event of
 * several topics carries `positions` for all of them; otherwise its own `topic`, `epoch` and `seq`
 * say it. `event_id` goes back to the server in `since`: it replays only if that event is still
 * at `seq` (a Redis restored from an older snapshot would otherwise look continuous).
 */
export function positionsOf(event) {
  const id = event.event_id;
  if (event.positions && typeof event.positions === "object") {
    const out = {};
    for (const [topic, p] of Object.entries(event.positions)) out[topic] = { epoch: p.epoch, seq: p.seq, event_id: id };
    return out;
  }
  if (event.epoch == null || event.seq == null) return {};
  return { [event.topic]: { epoch: event.epoch, seq: event.seq, event_id: id } };
}

/**
 * What makes an event frame the same frame again (a replay, a resend): its `event_id` and the
 * topics it addresses (in any order). One event is one frame on an unsharded server; a sharded one sends an
 * event of topics in several shards as one frame per shard, each addressing its shard's topics.
 */
export function frameKey(event) {
  return `${event.event_id} ${topicsOf(event).sort().join(" ")}`;
}

/** The positions a REST response carries in its `Wsmigrate-Positions` header ({} when absent). */
export function positionsFromResponse(response) {
  const raw = response && response.headers ? response.headers.get(POSITIONS_HEADER) : null;
  if (!raw) return {};
  try {
    const parsed = JSON.parse(raw);
    return parsed && typeof parsed === "object" ? parsed : {};
  } catch {
    return {};
  }
}

/** The response header a `topic_positions` REST endpoint sets (CORS: list it in expose_headers). */
export const POSITIONS_HEADER = "Wsmigrate-Positions";

function checkedPosition(since) {
  if (since == null) return null;
  if (typeof since !== "object" || typeof since.epoch !== "string" || !Number.isInteger(since.seq) || since.seq < 0) {
    throw new TypeError("subscribe: since must be {epoch: string, seq: integer >= 0} as the server returned it");
  }
  return { epoch: since.epoch, seq: since.seq };
}

/** Bounded LRU set of seen event ids: the least recently seen is evicted first. */
class RecentIds {
  constructor(limit) {
    this.limit = Math.max(1, limit);
    this.ids = new Map();
  }

  /** True if `id` is new (and remember it), false if it was seen already (and refresh it). */
  add(id) {
    if (this.ids.has(id)) {
      this.ids.delete(id);
      this.ids.set(id, true);
      return false;
    }
    this.ids.set(id, true);
    if (this.ids.size > this.limit) this.ids.delete(this.ids.keys().next().value);
    return true;
  }
}

function defaultUrl(path) {
  const loc = globalThis.location;
  if (!loc) throw new Error("wsclient: no `url` option and no window.location to derive it from");
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${path}`;
}

/**
 * The unified-protocol client. Extends EventTarget; events (all CustomEvent, payload in `detail`):
 *   statechange {state, previous} · open {attempt} · close {code, reason, wasClean, willReconnect}
 *   refused {code, reason, kind} (a definitive refusal, `REFUSALS`: the client is closed)
 *   subscribed {ack} · unsubscribed {ack} · resync {topic} · error {frame} · event {event}
 *   duplicate {event} · queueoverflow {frame} · handlererror {error, event}
 * `options.onRefused(detail)` is called with the `refused` event's detail.
 */
export class WsClient extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    this._url = options.url || null;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._random = options.random || Math.random;
    this._state = State.IDLE;
    this._ws = null;
    this._attempt = 0; // consecutive attempts without a stable connection
    this._reconnectTimer = null;
    this._stableTimer = null;
    this._keepaliveTimer = null;
    this._lastRx = 0;
    this._topics = new Map(); // topic -> {handlers: Set<sub>, position, sent, live, pendingId, error}
    this._dirty = new Set();
    this._flushQueued = false;
    this._typeHandlers = new Map(); // type -> Set<handler>; "*" for every event
    this._queue = [];
    // What this socket already handed on: frames by `frameKey` (topic handlers), events by id
    // (type handlers and `event` listeners: once per event, also when a sharded server sends an
    // event of topics in several shards as one frame per shard).
    this._seen = new RecentIds(this.options.dedupSize);
    this._seenEvents = new RecentIds(this.options.dedupSize);
    this._nextId = 1;
    this._pings = new Map(); // message_id -> {resolve, reject, sentAt, timer}
    this.stats = {
      attempts: 0, // sockets constructed
      connects: 0, // sockets that opened
      reconnects: 0, // opens after the first
      events: 0, // event frames dispatched
      duplicatesDropped: 0,
      snapshotSkipped: 0, // events a view skipped because its snapshot held them (`contains`)
      rewinds: 0, // topics re-subscribed from an older position for a view that joined late
      resyncs: 0,
      queueDropped: 0,
      lastClose: null,
    };
    if (typeof options.onStateChange === "function") {
      this.addEventListener("statechange", (e) => options.onStateChange(e.detail.state, e.detail.previous));
    }
    if (typeof options.onRefused === "function") {
      this.addEventListener("refused", (e) => options.onRefused(e.detail));
    }
    this.refusal = null; // the `refused` detail once the server refused this client for good
  }

  /** Current connection state (one of `State`). */
  get state() {
    return this._state;
  }

  /** True while the socket is open. */
  get connected() {
    return this._state === State.OPEN;
  }

  /** Topics with at least one handler. */
  get topics() {
    return [...this._topics.keys()];
  }

  /** Last seen {epoch, seq} of `topic`, or null. */
  position(topic) {
    const entry = this._topics.get(topic);
    return entry && entry.position ? { ...entry.position } : null;
  }

  /** True once the server acknowledged `topic` on the current socket. */
  isLive(topic) {
    const entry = this._topics.get(topic);
    return Boolean(entry && entry.live);
  }

  /** Open the socket (idempotent). createWsClient() calls it unless `autoStart: false`. */
  start() {
    if (this._state === State.IDLE) this._connect();
    return this;
  }

  /** Close for good: no reconnect. Subscriptions are forgotten with the client. */
  close(code = 1000, reason = "client closed") {
    if (this._state === State.CLOSED) return;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    this._setState(State.CLOSED);
    if (ws) {
      this._detach(ws);
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
    for (const ping of this._pings.values()) {
      clearTimeout(ping.timer);
      ping.reject(new Error("client closed"));
    }
    this._pings.clear();
    this._queue.length = 0;
    for (const entry of this._topics.values()) {
      entry.sent = false;
      entry.live = false;
    }
    this.dispatchEvent(new CustomEvent("close", {
      detail: { code, reason, wasClean: true, willReconnect: false },
    }));
  }

  /**
   * Subscribe `handler(event)` to `topic`; returns the function that unsubscribes it (idempotent).
   * options.since {epoch, seq}: the position the view's REST snapshot was read at (returned by the
   *   server with the snapshot): the handler gets exactly the events after it, replayed by the
   *   server if they already happened, whether or not another view holds the topic already.
   * options.contains(event): true when the snapshot already holds `event` (same `event_id` or
   *   resource version): it is skipped. Only events after `since` are asked.
   * options.onResync(topic): history was lost (`recovered:false`): reload the view as it first
   *   loaded (snapshot, then subscribe `since` it).
   * options.onSubscribed({topic, position}): the topic is live (at once if it already was).
   * options.onError(frame): the server refused the topic (not_found, forbidden, ...).
   */
  subscribe(topic, handler, options = {}) {
    if (typeof topic !== "string" || !topic) throw new TypeError("subscribe: topic must be a non-empty string");
    if (typeof handler !== "function") throw new TypeError("subscribe: handler must be a function");
    const since = checkedPosition(options.since);
    let entry = this._topics.get(topic);
    if (!entry) {
      entry = { handlers: new Set(), position: since, sent: false, live: false, pendingId: null, error: null,
        rewind: false };
      this._topics.set(topic, entry);
    }
    // `after`: the newest position of the topic this handler has (or its snapshot has).
    const sub = { handler, options, after: since || (entry.live && entry.position ? { ...entry.position } : null) };
    entry.handlers.add(sub);
    if (since && entry.position !== since) this._join(topic, entry, since);
    this._dirty.add(topic);
    this._scheduleFlush();
    if (entry.live && typeof options.onSubscribed === "function") {
      const position = entry.position ? { ...entry.position } : null;
      queueMicrotask(() => {
        if (entry.handlers.has(sub)) this._call(options.onSubscribed, { topic, position });
      });
    }
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      entry.handlers.delete(sub);
      this._dirty.add(topic);
      this._scheduleFlush();
    };
  }

  /**
   * A handler joins `topic` from `since`. Not sent yet: ask from the older of the two positions.
   * Sent, and the socket is already past `since`: the events in between went by before this view
   * existed, so the topic is re-subscribed from `since` (the other handlers skip what they had).
   */
  _join(topic, entry, since) {
    const known = entry.position;
    if (!entry.sent) {
      if (!known || known.epoch !== since.epoch || since.seq < known.seq) entry.position = { ...since };
      return;
    }
    if (entry.pendingId) return; // checked when the answer comes (_catchUp)
    if (known && known.epoch === since.epoch && since.seq >= known.seq) return;
    this._rewind(topic, entry);
  }

  /** After an ack: a handler that joined while the subscribe was on its way may need older events. */
  _catchUp(topic, entry) {
    const known = entry.position;
    if (!known) return;
    for (const sub of entry.handlers) {
      if (sub.after && sub.after.epoch === known.epoch && sub.after.seq < known.seq) {
        this._rewind(topic, entry);
        return;
      }
    }
  }

  /** Re-subscribe `topic` from the oldest position one of its handlers still needs. */
  _rewind(topic, entry) {
    let from = null;
    for (const sub of entry.handlers) {
      const after = sub.after;
      if (!after) continue;
      if (!from || (after.epoch === from.epoch && after.seq < from.seq)) from = { ...after };
    }
    if (!from) return;
    this.stats.rewinds += 1;
    entry.position = from;
    entry.live = false;
    entry.rewind = entry.sent; // sent: unsubscribe, then subscribe from `from`; else the next subscribe asks
    this._dirty.add(topic);
    this._scheduleFlush();
  }

  /** Handle every event of `type` (on any topic; "*" for all); returns the function removing it. */
  on(type, handler) {
    let handlers = this._typeHandlers.get(type);
    if (!handlers) {
      handlers = new Set();
      this._typeHandlers.set(type, handlers);
    }
    const wrapped = { handler };
    handlers.add(wrapped);
    return () => handlers.delete(wrapped);
  }

  /**
   * Send a client frame (an object, JSON-encoded). While the socket is not open the frame waits in
   * a bounded queue (`maxQueue`), flushed after the subscriptions on connect. Returns false if the
   * frame was dropped (queue full, or the client is closed).
   */
  send(frame) {
    if (this._state === State.CLOSED) return false;
    if (this._state === State.OPEN && this._ws && this._write(this._ws, frame)) return true;
    if (this._queue.length >= this.options.maxQueue) {
      this.stats.queueDropped += 1;
      this.dispatchEvent(new CustomEvent("queueoverflow", { detail: { frame } }));
      return false;
    }
    this._queue.push(frame);
    return true;
  }

  /** Round-trip a protocol `ping`; resolves with the round-trip time in ms. */
  ping(timeoutMs = this.options.pingTimeoutMs) {
    const messageId = `p${this._nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pings.delete(messageId);
        reject(new Error("ping timed out"));
      }, timeoutMs);
      this._pings.set(messageId, { resolve, reject, timer, sentAt: Date.now() });
      if (!this.send({ type: "ping", message_id: messageId })) {
        clearTimeout(timer);
        this._pings.delete(messageId);
        reject(new Error("ping could not be queued"));
      }
    });
  }

  // -- connection ------------------------------------------------------------------------------

  _setState(state) {
    const previous = this._state;
    if (previous === state) return;
    this._state = state;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state, previous } }));
  }

  async _buildUrl() {
    const url = new URL(this._url || defaultUrl(this.options.path), globalThis.location?.href);
    let token = this.options.token;
    if (typeof this.options.getToken === "function") token = await this.options.getToken();
    if (token) url.searchParams.set("token", token);
    return url.toString();
  }

  async _connect() {
    this._reconnectTimer = null;
    if (this._state === State.CLOSED) return;
    this._setState(State.CONNECTING);
    let url;
    try {
      url = await this._buildUrl();
    } catch (error) {
      if (this._state !== State.CLOSED) this._scheduleReconnect({ code: 0, reason: `token: ${error}` });
      return;
    }
    if (this._state !== State.CONNECTING) return; // closed while waiting for the token
    this.stats.attempts += 1;
    let ws;
    try {
      ws = new this._WebSocket(url);
    } catch (error) {
      this._scheduleReconnect({ code: 0, reason: String(error) });
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (message) => this._onMessage(ws, message);
    ws.onclose = (event) => this._onClose(ws, event);
    ws.onerror = () => {}; // a close event always follows
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    this.stats.connects += 1;
    if (this.stats.connects > 1) this.stats.reconnects += 1;
    this._lastRx = Date.now();
    // The attempt counter resets only once a connection proved stable, so a server that accepts
    // and drops at once still meets a growing backoff.
    this._stableTimer = setTimeout(() => {
      this._attempt = 0;
    }, this.options.stableAfterMs);
    this._setState(State.OPEN);
    this._sendSubscribeAll();
    const queued = this._queue.splice(0);
    while (queued.length && this._write(ws, queued[0])) queued.shift();
    this._queue.unshift(...queued); // the socket closed under us: sent after the reconnect
    this._armKeepalive();
    this.dispatchEvent(new CustomEvent("open", { detail: { attempt: this._attempt } }));
  }

  _onClose(ws, event) {
    if (ws !== this._ws) return;
    this._detach(ws);
    this._ws = null;
    const kind = REFUSALS[event.code];
    if (kind) {
      this._refused({ code: event.code, reason: event.reason || "", kind });
      return;
    }
    this._scheduleReconnect({ code: event.code, reason: event.reason, wasClean: event.wasClean });
  }

  /** The server said no for good: stop, and say why (see `REFUSALS`). */
  _refused(detail) {
    this.stats.lastClose = { code: detail.code, reason: detail.reason };
    this.refusal = detail;
    this.close(1000, "refused");
    this.dispatchEvent(new CustomEvent("refused", { detail }));
  }

  /** Forget the current socket (dead or closed) and plan the next attempt. */
  _scheduleReconnect(close) {
    this._clearTimers();
    for (const entry of this._topics.values()) {
      entry.sent = false;
      entry.live = false;
      entry.pendingId = null;
    }
    this.stats.lastClose = { code: close.code, reason: close.reason || "" };
    const ceiling = Math.min(this.options.backoffMaxMs, this.options.backoffInitialMs * 2 ** this._attempt);
    // Full jitter, with a floor so a flapping server never meets a tight loop.
    const delay = Math.max(this.options.backoffMinMs, Math.floor(this._random() * ceiling));
    this._attempt += 1;
    // Timer first, events after: a listener may call close(), which must cancel it.
    this._reconnectTimer = setTimeout(() => this._connect(), delay);
    this._setState(State.RECONNECTING);
    if (this._state !== State.RECONNECTING) return;
    this.dispatchEvent(new CustomEvent("close", {
      detail: { code: close.code, reason: close.reason || "", wasClean: Boolean(close.wasClean),
        willReconnect: true, delayMs: delay },
    }));
  }

  _clearTimers() {
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._stableTimer);
    clearTimeout(this._keepaliveTimer);
    this._reconnectTimer = this._stableTimer = this._keepaliveTimer = null;
  }

  /** If nothing arrived for `keepaliveMs`, ping; if still nothing within `pongTimeoutMs`, drop. */
  _armKeepalive() {
    clearTimeout(this._keepaliveTimer);
    if (!this.options.keepaliveMs) return;
    this._keepaliveTimer = setTimeout(() => this._checkAlive(), this.options.keepaliveMs);
  }

  _checkAlive() {
    const ws = this._ws;
    if (!ws || this._state !== State.OPEN) return;
    const idle = Date.now() - this._lastRx;
    if (idle < this.options.keepaliveMs) {
      this._keepaliveTimer = setTimeout(() => this._checkAlive(), this.options.keepaliveMs - idle);
      return;
    }
    const askedAt = Date.now();
    this._write(ws, { type: "ping", message_id: `k${this._nextId++}` });
    this._keepaliveTimer = setTimeout(() => {
      if (ws !== this._ws || this._lastRx >= askedAt) {
        this._armKeepalive();
        return;
      }
      this._detach(ws);
      this._ws = null;
      try {
        ws.close(CLIENT_KEEPALIVE_CLOSE, "keepalive timeout");
      } catch {
        // already closing
      }
      this._scheduleReconnect({ code: CLIENT_KEEPALIVE_CLOSE, reason: "keepalive timeout" });
    }, this.options.pongTimeoutMs);
  }

  // -- subscriptions ---------------------------------------------------------------------------

  _scheduleFlush() {
    if (this._flushQueued) return;
    this._flushQueued = true;
    queueMicrotask(() => this._flush());
  }

  /** Send what changed since the last flush: one unsubscribe and one subscribe frame at most. */
  _flush() {
    this._flushQueued = false;
    const subscribe = [];
    const unsubscribe = [];
    for (const topic of this._dirty) {
      const entry = this._topics.get(topic);
      if (!entry) continue;
      if (entry.handlers.size === 0) {
        this._topics.delete(topic);
        if (entry.sent) unsubscribe.push(topic);
      } else if (!entry.sent) {
        subscribe.push(topic);
      } else if (entry.rewind) {
        unsubscribe.push(topic);
        subscribe.push(topic);
      }
      entry.rewind = false;
    }
    this._dirty.clear();
    if (this._state !== State.OPEN || !this._ws) return; // sent on connect
    if (unsubscribe.length) {
      this._write(this._ws, { type: "unsubscribe", topics: unsubscribe, message_id: `u${this._nextId++}` });
    }
    if (subscribe.length) this._sendSubscribe(subscribe);
  }

  _sendSubscribeAll() {
    this._dirty.clear();
    const topics = [];
    for (const [topic, entry] of this._topics) {
      if (entry.handlers.size === 0) this._topics.delete(topic);
      else topics.push(topic);
    }
    if (topics.length) this._sendSubscribe(topics);
  }

  /** One `subscribe` frame; topics with a known position ask for the events after it. */
  _sendSubscribe(topics) {
    const messageId = `s${this._nextId++}`;
    const frame = { type: "subscribe", topics, message_id: messageId };
    const since = {};
    for (const topic of topics) {
      const entry = this._topics.get(topic);
      entry.sent = true;
      entry.live = false;
      entry.rewind = false;
      entry.pendingId = messageId;
      entry.error = null;
      const p = entry.position;
      if (p) since[topic] = p.event_id ? { epoch: p.epoch, seq: p.seq, event_id: p.event_id } : { epoch: p.epoch, seq: p.seq };
    }
    if (Object.keys(since).length) frame.since = since;
    this._write(this._ws, frame); // unsent (closing): the reconnect subscribes every topic again
  }

  /**
   * Send on `ws` only while it is open. A server may close a socket right after accepting it (a
   * refusal, a restart); its close can arrive before the client's first frames leave, and a send on
   * a closing socket is dropped by the browser with a console error. False: not sent.
   */
  _write(ws, frame) {
    if (ws.readyState !== 1) return false; // WebSocket.OPEN, also for injected implementations
    ws.send(JSON.stringify(frame));
    return true;
  }

  _onSubscribed(ack) {
    const positions = ack.positions || {};
    for (const topic of ack.topics || []) {
      const entry = this._topics.get(topic);
      if (!entry || entry.pendingId !== ack.message_id) continue; // an answer to an older request
      const position = positions[topic] || null;
      entry.pendingId = null;
      entry.live = true;
      if (position) {
        const known = entry.position; // keep the id of the event at this position, when it is ours
        const same = known && known.epoch === position.epoch && known.seq === position.seq;
        entry.position = { epoch: position.epoch, seq: position.seq, ...(same && known.event_id ? { event_id: known.event_id } : {}) };
      }
      for (const sub of [...entry.handlers]) {
        if (typeof sub.options.onSubscribed === "function") {
          this._call(sub.options.onSubscribed, { topic, position: position ? { ...position } : null });
        }
      }
      if (position && position.recovered === false) this._resync(topic, entry);
      else this._catchUp(topic, entry);
    }
    this.dispatchEvent(new CustomEvent("subscribed", { detail: { ack } }));
  }

  /** The server could not replay what the client missed: every view of `topic` refetches. */
  _resync(topic, entry) {
    this.stats.resyncs += 1;
    for (const sub of [...entry.handlers]) {
      if (typeof sub.options.onResync === "function") this._call(sub.options.onResync, topic);
    }
    if (typeof this.options.onResync === "function") this._call(this.options.onResync, topic);
    this.dispatchEvent(new CustomEvent("resync", { detail: { topic } }));
  }

  _onError(frame) {
    const entry = frame.topic ? this._topics.get(frame.topic) : null;
    if (entry && entry.pendingId && entry.pendingId === frame.message_id) {
      entry.error = frame;
      entry.sent = false; // refused: it is not subscribed on this socket
      entry.pendingId = null;
      for (const sub of [...entry.handlers]) {
        if (typeof sub.options.onError === "function") this._call(sub.options.onError, frame);
      }
    }
    const ping = frame.message_id ? this._pings.get(frame.message_id) : null;
    if (ping) {
      clearTimeout(ping.timer);
      this._pings.delete(frame.message_id);
      ping.reject(new Error(frame.message));
    }
    this.dispatchEvent(new CustomEvent("error", { detail: { frame } }));
  }

  // -- inbound ---------------------------------------------------------------------------------

  _onMessage(ws, message) {
    if (ws !== this._ws) return;
    this._lastRx = Date.now();
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.event_id !== undefined && frame.topic !== undefined) {
      this._onEvent(frame);
      return;
    }
    switch (frame.type) {
      case "ping": // server heartbeat
        this._write(ws, { type: "pong" });
        break;
      case "pong": {
        const ping = this._pings.get(frame.message_id);
        if (ping) {
          clearTimeout(ping.timer);
          this._pings.delete(frame.message_id);
          ping.resolve(Date.now() - ping.sentAt);
        }
        break;
      }
      case "subscribed":
        this._onSubscribed(frame);
        break;
      case "unsubscribed":
        this.dispatchEvent(new CustomEvent("unsubscribed", { detail: { ack: frame } }));
        break;
      case "error":
        this._onError(frame);
        break;
      default:
        break;
    }
  }

  _onEvent(event) {
    const positions = positionsOf(event);
    const live = [];
    for (const topic of topicsOf(event)) {
      const entry = this._topics.get(topic);
      if (!entry || !entry.live) continue; // a late event of a topic left (or being re-subscribed)
      const at = positions[topic] || null;
      const known = entry.position;
      if (at && (!known || known.epoch !== at.epoch || at.seq > known.seq)) entry.position = { ...at };
      live.push([entry, at]);
    }
    if (!live.length) return;
    const fresh = this._seen.add(frameKey(event));
    const called = new Set();
    let held = false;
    for (const [entry, at] of live) {
      for (const sub of [...entry.handlers]) {
        if (called.has(sub.handler)) {
          if (at) sub.after = { epoch: at.epoch, seq: at.seq }; // it has the event, through another topic
          continue;
        }
        const verdict = this._wants(sub, at, event, fresh);
        if (verdict === "held") held = true;
        if (verdict !== "deliver") continue;
        called.add(sub.handler);
        this._call(sub.handler, event);
      }
    }
    if (held && !called.size) this.stats.snapshotSkipped += 1;
    if (!fresh) {
      if (!called.size && !held) {
        this.stats.duplicatesDropped += 1;
        this.dispatchEvent(new CustomEvent("duplicate", { detail: { event } }));
      }
      return;
    }
    if (!this._seenEvents.add(event.event_id)) return; // another shard's frame of it came first
    this.stats.events += 1;
    for (const key of [event.type, "*"]) {
      const handlers = this._typeHandlers.get(key);
      if (!handlers) continue;
      for (const wrapped of [...handlers]) this._call(wrapped.handler, event);
    }
    this.dispatchEvent(new CustomEvent("event", { detail: { event } }));
  }

  /**
   * Whether handler `sub` gets `event`, which stands at `at` on the sub's topic: "deliver", "had"
   * (at or before the handler's position: it had it, or its snapshot's position covers it), "held"
   * (its `contains` says the snapshot holds it) or "duplicate" (seen on this socket, and nothing
   * shows the handler lacks it). Per-handler positions make a re-subscription's replay reach only
   * the handlers that lack it.
   */
  _wants(sub, at, event, fresh) {
    const after = sub.after;
    const comparable = Boolean(at && after && at.epoch === after.epoch);
    if (comparable && at.seq <= after.seq) return "had";
    if (!fresh && !comparable) return "duplicate";
    if (at) sub.after = { epoch: at.epoch, seq: at.seq };
    const contains = sub.options.contains;
    if (typeof contains === "function") {
      let held = false;
      try {
        held = Boolean(contains(event));
      } catch (error) {
        console.error("wsclient: contains() failed", error);
        this.dispatchEvent(new CustomEvent("handlererror", { detail: { error, event } }));
      }
      if (held) return "held";
    }
    return "deliver";
  }

  _call(fn, arg) {
    try {
      fn(arg);
    } catch (error) {
      console.error("wsclient: handler failed", error);
      this.dispatchEvent(new CustomEvent("handlererror", { detail: { error, event: arg } }));
    }
  }
}

/** Create a client and open its socket (unless `autoStart: false`). */
export function createWsClient(options = {}) {
  const client = new WsClient(options);
  if (options.autoStart !== false) client.start();
  return client;
}
