#!/usr/bin/env node
// Load generator for the wsmigrate benchmarks (driven by bench/run.py; usable on its own).
//
// One process, `ws` sockets, no compression offered (so no server compresses). Every published
// event carries its number `n` and its send time `t` (performance.now() of this process), so
// latency, loss and duplicates are measured end to end, per client, against what was published.
//
// Workloads (--phases, in order):
//   connect     C clients, client i subscribed to thread:{i % T + 1}; set-up rate, server RSS/conn
//   warmup      a few hundred events, waited for (not reported as a result)
//   burst       M events to random threads, as fast as the publisher socket takes them
//   paced       P events at --rate events/s
//   turns       M events handed over in frames of --turn-chunk events ({"turns": [...]}); the
//               server publishes each and yields to its event loop after each one ("one event
//               per loop turn": a request handler per event, a streamed reply token by token)
//   navigation  U users x K navigations between a dashboard (agent:1) and a chat (thread:k) view,
//               for each --nav-styles entry: reconnect=<adapter> (close, open, subscribe, receive)
//               or resubscribe=<adapter> (one socket: unsubscribe + subscribe, wait for the ack)
//   idle        C connections held for --idle-seconds: server CPU at rest, RSS per connection
//   --sub-ports P1,P2 --placement all|halves: subscribers connect to other servers than the
//   publisher (one bus, e.g. Redis): `all` puts every client on P1, `halves` the clients of the
//   first half of the threads on P1 and the rest on P2 (unified only). Server CPU is also reported
//   per process (server_cpu_s_by_pid), so each server's cost per event can be read apart.
//   storm       (unified) events at --storm-rate/s to the C connected clients; after --storm-lead-ms
//               every socket is dropped at once (a proxy or ingress restart) and all reconnect,
//               each subscribing with `since` its last position; a reference client that is not
//               dropped follows every topic. Reports the time until all are live again, replay
//               exactness per client, the reference client's latency and the server's longest
//               collector pause (GET /bench/gc) meanwhile. --storm-mode restart: the subscribers'
//               server (--sub-ports) is made to exit at once instead (GET /bench/exit, its supervisor
//               starts it again), while the publisher and the reference client stay on --port, another
//               server on the same Redis bus; clients retry until the new process accepts them
//
// Server CPU and RSS come from /proc/<pid> of --pids (the server's processes), read at phase
// boundaries; the generator's own CPU from process.cpuUsage(). Result: one JSON document (--out).

import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';

const { values: opt } = parseArgs({
  options: {
    adapter: { type: 'string', default: 'unified' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8000' },
    clients: { type: 'string', default: '1000' },
    threads: { type: 'string', default: '100' },
    events: { type: 'string', default: '20000' },
    'paced-events': { type: 'string', default: '10000' },
    rate: { type: 'string', default: '1000' },
    payload: { type: 'string', default: '100' },
    warmup: { type: 'string', default: '300' },
    'turn-chunk': { type: 'string', default: '500' },
    phases: { type: 'string', default: 'connect,warmup,burst,paced' },
    'nav-styles': { type: 'string', default: '' },
    'nav-users': { type: 'string', default: '50' },
    'nav-count': { type: 'string', default: '40' },
    'idle-seconds': { type: 'string', default: '10' },
    'connect-concurrency': { type: 'string', default: '100' },
    'stall-ms': { type: 'string', default: '15000' },
    'storm-rate': { type: 'string', default: '100' },
    'sub-ports': { type: 'string', default: '' },
    placement: { type: 'string', default: 'all' },
    'storm-lead-ms': { type: 'string', default: '3000' },
    'storm-tail-ms': { type: 'string', default: '2000' },
    'storm-max-s': { type: 'string', default: '90' },
    'storm-mode': { type: 'string', default: 'drop' },
    pids: { type: 'string', default: '' },
    'clk-tck': { type: 'string', default: '100' },
    'page-size': { type: 'string', default: '4096' },
    seed: { type: 'string', default: '7' },
    token: { type: 'string', default: '' },
    out: { type: 'string', default: '' },
  },
});

const HOST = opt.host;
const PORT = Number(opt.port);
const BASE = `ws://${HOST}:${PORT}`;
const C = Number(opt.clients);
const T = Number(opt.threads);
const M = Number(opt.events);
const P = Number(opt['paced-events']);
const RATE = Number(opt.rate);
const PAYLOAD = Number(opt.payload);
const STALL_MS = Number(opt['stall-ms']);
const CONCURRENCY = Number(opt['connect-concurrency']);
const PIDS = opt.pids ? opt.pids.split(',').map(Number) : [];
const CLK_TCK = Number(opt['clk-tck']);
const PAGE = Number(opt['page-size']);
const HEADERS = opt.token ? { Authorization: `Bearer ${opt.token}` } : {};
const SUB_BASES = opt['sub-ports'] ? opt['sub-ports'].split(',').map((p) => `ws://${HOST}:${p}`) : [BASE];

function subscriberBase(threadIndex) {
  // where the client of thread index k connects (see --placement)
  if (opt.placement === 'halves' && SUB_BASES.length > 1) return SUB_BASES[threadIndex < T / 2 ? 0 : 1];
  return SUB_BASES[0];
}

// -- /proc readings -------------------------------------------------------------------------------

function pidCpuSeconds(pid, kernelOnly = false) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime (fields 14, 15 of stat); stime is the kernel's share (socket writes, epoll)
    return ((kernelOnly ? 0 : Number(fields[11])) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0; // a worker that exited: its CPU is no longer counted
  }
}

function serverCpuSeconds(kernelOnly = false) {
  let seconds = 0;
  for (const pid of PIDS) seconds += pidCpuSeconds(pid, kernelOnly);
  return seconds;
}

function serverRssBytes() {
  let pages = 0;
  for (const pid of PIDS) {
    try {
      pages += Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    } catch {
      // gone
    }
  }
  return pages * PAGE;
}

function serverPeakRssBytes() {
  // VmHWM: the most resident memory each server process ever had (its high-water mark)
  let kib = 0;
  for (const pid of PIDS) {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) kib += Number(match[1]);
    } catch {
      // gone
    }
  }
  return kib * 1024;
}

class Meter {
  // Wall time, server CPU and generator CPU over one measured window.
  constructor() {
    this.t0 = performance.now();
    this.server0 = serverCpuSeconds();
    this.serverSys0 = serverCpuSeconds(true);
    this.byPid0 = PIDS.map((pid) => pidCpuSeconds(pid));
    this.gen0 = process.cpuUsage();
  }

  stop(end = performance.now()) {
    const wall = (end - this.t0) / 1000;
    const server = serverCpuSeconds() - this.server0;
    const serverSys = serverCpuSeconds(true) - this.serverSys0;
    const gen = process.cpuUsage(this.gen0);
    const genCpu = (gen.user + gen.system) / 1e6;
    return {
      wall_s: wall,
      server_cpu_s: server,
      server_sys_share: server > 0 ? serverSys / server : null,
      server_cpu_s_by_pid: Object.fromEntries(PIDS.map((pid, i) => [pid, pidCpuSeconds(pid) - this.byPid0[i]])),
      server_cpu_pct: wall > 0 ? (100 * server) / wall : 0,
      server_rss_mb: serverRssBytes() / 1048576,
      server_peak_rss_mb: serverPeakRssBytes() / 1048576,
      generator_cpu_s: genCpu,
      generator_cpu_pct: wall > 0 ? (100 * genCpu) / wall : 0,
    };
  }
}

// -- small helpers --------------------------------------------------------------------------------

let seed = Number(opt.seed) >>> 0 || 7;
function random() {
  // xorshift32: the same sequence of target threads for every server
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function percentiles(values) {
  if (values.length === 0) return { p50_ms: null, p99_ms: null, max_ms: null, mean_ms: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  let sum = 0;
  for (const v of sorted) sum += v;
  return { p50_ms: at(0.5), p99_ms: at(0.99), max_ms: sorted[sorted.length - 1], mean_ms: sum / sorted.length };
}

// Event frames are recognised and read without a full JSON.parse (the generator must stay far
// from saturating its core): every published payload is {"thread_id":K,"n":N,"t":T,"content":"x.."}
// and no envelope or control frame of any protocol has a key "n" or "t".
function readEvent(conn, text) {
  const i = text.indexOf('"n":');
  if (i < 0) return false;
  const j = text.indexOf('"t":', i);
  const k = text.indexOf('"thread_id":');
  conn.event(parseInt(text.slice(i + 4), 10), parseFloat(text.slice(j + 4)), parseInt(text.slice(k + 12), 10));
  return true;
}

function topicOf(threadIndex) {
  return `thread:${threadIndex + 1}`;
}

// -- connections ----------------------------------------------------------------------------------

let opened = 0;

let unavailableAnswers = 0; // subscribes answered `unavailable` (and retried), over the whole run
const unavailableSamples = []; // the first few of those answers, as the server sent them

class Conn {
  constructor(adapter, url) {
    this.adapter = adapter;
    this.acks = new Map();
    this.onEvent = null;
    this.errors = [];
    this.closedUnexpectedly = false;
    this.expectClose = false;
    this.nextId = 1;
    this.ws = new WebSocket(url, {
      perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 30000, headers: HEADERS,
    });
    opened += 1;
    this.ws.on('message', (data, isBinary) => adapter.onMessage(this, isBinary ? data : data.toString()));
    this.ws.on('close', (code) => {
      this.closeCode = code;
      if (!this.expectClose) this.closedUnexpectedly = true;
      for (const [, waiter] of this.acks) waiter.reject(new Error(`closed ${code} while waiting`));
      this.acks.clear();
    });
    this.ws.on('error', (err) => this.errors.push(String(err)));
  }

  opened() {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) { resolve(); return; }
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('close', (code) => reject(new Error(`closed ${code} before open`)));
    });
  }

  waitAck(id) {
    return new Promise((resolve, reject) => this.acks.set(String(id), { resolve, reject }));
  }

  ack(id, value) {
    const waiter = this.acks.get(String(id));
    if (waiter) {
      this.acks.delete(String(id));
      waiter.resolve(value);
    }
  }

  refuse(id, reason) {
    const waiter = this.acks.get(String(id));
    if (waiter) {
      this.acks.delete(String(id));
      waiter.reject(new Error(reason));
    }
  }

  event(n, t, threadId) {
    if (this.onEvent) this.onEvent(n, t, threadId);
  }

  send(text) {
    this.ws.send(text);
  }

  close() {
    this.expectClose = true;
    this.ws.close();
  }

  drop() {
    // No closing handshake: the socket just goes, as when a proxy in between restarts
    this.expectClose = true;
    this.ws.terminate();
  }
}

// -- protocol adapters ----------------------------------------------------------------------------
// Each adapter speaks one server's protocol: how to open a socket (optionally already on a view),
// subscribe, switch topics, and which frames are events and which are acknowledgements.

const plain = {
  // bare websockets and FastAPI naive: {"op": "sub"|"unsub", "topic", "id"} -> {"op": "ack", "id"}
  publishPath: '/publish',
  async connect(view = null) {
    const conn = new Conn(this, view ? `${BASE}/ws?topic=${encodeURIComponent(view.topic)}` : `${BASE}/ws`);
    const ready = view ? conn.waitAck(0) : null;
    await conn.opened();
    if (ready) await ready;
    return conn;
  },
  async subscribe(conn, topic) {
    const id = conn.nextId++;
    const acked = conn.waitAck(id);
    conn.send(JSON.stringify({ op: 'sub', topic, id }));
    await acked;
  },
  async switch(conn, from, to) {
    conn.send(JSON.stringify({ op: 'unsub', topic: from, id: conn.nextId++ }));
    await this.subscribe(conn, to);
  },
  onMessage(conn, text) {
    if (readEvent(conn, text)) return;
    const m = JSON.parse(text);
    if (m.op === 'ack') conn.ack(m.id);
  },
};

const unified = {
  // wsmigrate /api/ws (docs/protocol.md, unified protocol)
  publishPath: '/bench/publish',
  async connect(base = BASE) {
    const conn = new Conn(this, `${base}/api/ws`);
    await conn.opened();
    return conn;
  },
  async subscribe(conn, topic, since = null) {
    return this.subscribeAll(conn, [topic], since ? { [topic]: since } : null);
  },
  async subscribeAll(conn, topics, since = null) {
    let ack;
    for (let attempt = 1; ; attempt++) {
      const id = `s${conn.nextId++}`;
      const acked = conn.waitAck(id);
      const frame = { type: 'subscribe', topics, message_id: id };
      if (since) frame.since = since;
      conn.send(JSON.stringify(frame));
      try {
        ack = await acked;
        break;
      } catch (err) {
        // a socket that closed meanwhile (its server died) is done: the caller opens another one
        if (conn.closeCode !== undefined) throw err;
        // `unavailable`: the bus could not answer in time, nothing was subscribed; retry on the
        // same socket as a client does (counted, so a run shows how often it happened)
        unavailableAnswers += 1;
        if (unavailableSamples.length < 5) unavailableSamples.push(String(err.message).slice(0, 300));
        if (attempt >= 5) throw err;
        await sleep(100 * attempt);
      }
    }
    for (const topic of topics) {
      if (!ack.topics.includes(topic)) throw new Error(`subscribe ${topic} refused: ${conn.errors.at(-1)}`);
    }
    conn.positions = ack.positions;
    return ack;
  },
  async switch(conn, from, to) {
    conn.send(JSON.stringify({ type: 'unsubscribe', topics: [from], message_id: `u${conn.nextId++}` }));
    await this.subscribe(conn, to);
  },
  onMessage(conn, text) {
    if (readEvent(conn, text)) {
      if (conn.keepLast) conn.last = text; // the storm resumes from the last event's position
      return;
    }
    const m = JSON.parse(text);
    if (m.type === 'subscribed') conn.ack(m.message_id, m);
    else if (m.type === 'ping') conn.send('{"type":"pong"}'); // heartbeat
    else if (m.type === 'error') {
      conn.errors.push(text);
      // "nothing was subscribed, retry" (docs/protocol.md): the subscribe fails and is retried
      if (m.code === 'unavailable' && m.message_id != null) conn.refuse(m.message_id, text);
    }
  },
};

const legacy = {
  // wsmigrate /api/ws?thread_id=K (chat view) or ?agent_id=A (dashboard view): legacy protocol.
  // A view is live when the server answered on it: thread_history for a thread socket, and the
  // pong to a ping for an agent socket (which gets no frame on open).
  publishPath: '/bench/publish',
  async connect(view) {
    const query = view.kind === 'agent' ? `agent_id=${view.id}` : `thread_id=${view.id}`;
    const conn = new Conn(this, `${BASE}/api/ws?${query}`);
    const ready = conn.waitAck('view');
    await conn.opened();
    if (view.kind === 'agent') conn.send(JSON.stringify({ type: 'ping', timestamp: 1 }));
    await ready;
    return conn;
  },
  onMessage(conn, text) {
    if (readEvent(conn, text)) return;
    const m = JSON.parse(text);
    if (m.type === 'thread_history' || m.type === 'pong') conn.ack('view');
    else if (m.type === 'error') conn.errors.push(text);
  },
};

const socketio = {
  // python-socketio: Engine.IO v4 / Socket.IO v5 over a raw WebSocket transport
  publishPath: '/publish',
  async connect() {
    const conn = new Conn(this, `${BASE}/socket.io/?EIO=4&transport=websocket`);
    const ready = conn.waitAck('nsp');
    await conn.opened();
    await ready;
    return conn;
  },
  async subscribe(conn, topic) {
    const id = conn.nextId++;
    const acked = conn.waitAck(id);
    conn.send(`42${id}${JSON.stringify(['subscribe', topic])}`);
    await acked;
  },
  async switch(conn, from, to) {
    conn.send(`42${conn.nextId++}${JSON.stringify(['unsubscribe', from])}`);
    await this.subscribe(conn, to);
  },
  onMessage(conn, text) {
    switch (text[0]) {
      case '0':
        conn.send('40'); // open -> connect to the default namespace
        return;
      case '2':
        conn.send('3'); // ping -> pong
        return;
      case '4':
        break;
      default:
        return;
    }
    const kind = text[1];
    if (kind === '2') {
      if (!readEvent(conn, text)) conn.errors.push(text);
    } else if (kind === '3') {
      const bracket = text.indexOf('[');
      conn.ack(text.slice(2, bracket));
    } else if (kind === '0') {
      conn.ack('nsp');
    } else {
      conn.errors.push(text);
    }
  },
};

const pubsub = {
  // fastapi-websocket-pubsub: JSON-RPC; the server calls `notify` on the client and awaits the answer
  publishPath: '/publish',
  async connect() {
    const conn = new Conn(this, `${BASE}/pubsub`);
    await conn.opened();
    return conn;
  },
  async call(conn, method, topics) {
    const id = `c${conn.nextId++}`;
    const acked = conn.waitAck(id);
    conn.send(JSON.stringify({ request: { method, arguments: { topics }, call_id: id } }));
    return acked;
  },
  async subscribe(conn, topic) {
    await this.call(conn, 'subscribe', [topic]);
  },
  async switch(conn, from, to) {
    this.call(conn, 'unsubscribe', [from]);
    await this.subscribe(conn, to);
  },
  onMessage(conn, text) {
    const m = JSON.parse(text);
    if (m.request) {
      const { request } = m;
      if (request.call_id) {
        conn.send(JSON.stringify({ response: { result: null, result_type: 'None', call_id: request.call_id } }));
      }
      if (request.method === 'notify') {
        const { data } = request.arguments.data;
        conn.event(data.n, data.t, data.thread_id);
      }
    } else if (m.response) {
      conn.ack(m.response.call_id, m.response.result);
    }
  },
};

const ADAPTERS = { plain, unified, legacy, socketio, pubsub };
const adapter = ADAPTERS[opt.adapter];
if (!adapter) throw new Error(`unknown adapter ${opt.adapter}`);

// Open a subscriber on thread index k with the adapter's natural way of following a thread.
async function openSubscriber(a, k) {
  if (a === legacy) return a.connect({ kind: 'thread', id: k + 1, topic: topicOf(k) });
  const conn = a === unified ? await a.connect(subscriberBase(k)) : await a.connect();
  await a.subscribe(conn, topicOf(k));
  return conn;
}

async function openMany(a, count, open) {
  const conns = new Array(count);
  let next = 0;
  let failures = 0;
  const errors = [];
  async function worker() {
    while (next < count) {
      const i = next++;
      for (let attempt = 0; ; attempt++) {
        try {
          conns[i] = await open(i);
          break;
        } catch (err) {
          failures += 1;
          if (errors.length < 5) errors.push(String(err));
          if (attempt >= 2) throw err;
          await sleep(100);
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, worker));
  return { conns, failures, errors };
}

// -- fan-out --------------------------------------------------------------------------------------

const pad = 'x'.repeat(Math.max(0, PAYLOAD - `{"thread_id":100,"n":12345,"t":123456.789,"content":""}`.length));

function eventFrame(k, n) {
  const t = performance.now();
  return `{"type":"stream_chunk","topic":"thread:${k + 1}","data":{"thread_id":${k + 1},"n":${n},"t":${t.toFixed(3)},"content":"${pad}"}}`;
}

class FanoutPhase {
  // What every client must receive for events [base, base + count), and what each one did receive.
  constructor(name, clients, base, count) {
    this.name = name;
    this.clients = clients;
    this.base = base;
    this.count = count;
    this.targets = new Uint16Array(count);
    const perThread = new Array(T).fill(0);
    for (let i = 0; i < count; i++) {
      const k = Math.floor(random() * T);
      this.targets[i] = k;
      perThread[k] += 1;
    }
    this.expected = 0;
    for (const c of clients) {
      c.expect = perThread[c.thread];
      this.expected += c.expect;
      c.got = 0;
      c.dup = 0;
      c.wrong = 0;
      c.seen = new Uint8Array(count);
    }
    this.received = 0;
    this.stray = 0;
    this.latencies = new Float64Array(this.expected);
    this.lastProgress = performance.now();
    this.lastDelivery = 0;
  }

  attach() {
    for (const c of this.clients) {
      c.conn.onEvent = (n, t, threadId) => this.onEvent(c, n, t, threadId);
    }
  }

  onEvent(c, n, t, threadId) {
    const now = performance.now();
    const i = n - this.base;
    if (i < 0 || i >= this.count) {
      this.stray += 1;
      return;
    }
    if (this.targets[i] !== c.thread || threadId !== c.thread + 1) c.wrong += 1;
    if (c.seen[i]) {
      c.dup += 1;
      return;
    }
    c.seen[i] = 1;
    c.got += 1;
    this.latencies[this.received++] = now - t;
    this.lastProgress = now;
    this.lastDelivery = now;
    if (this.received === this.expected && this.done) this.done();
  }

  async publish(publisher, mode) {
    const paced = mode === 'paced';
    this.attach();
    const finished = new Promise((resolve) => { this.done = resolve; });
    const meter = new Meter();
    const start = meter.t0;
    let sent = 0;
    if (paced) {
      await new Promise((resolve) => {
        const tick = () => {
          const due = Math.min(this.count, Math.floor(((performance.now() - start) * RATE) / 1000) + 1);
          while (sent < due) {
            publisher.send(eventFrame(this.targets[sent], this.base + sent));
            sent += 1;
          }
          if (sent < this.count) setTimeout(tick, 1);
          else resolve();
        };
        tick();
      });
    } else if (mode === 'turns') {
      // The server yields after each event; its frames are read while it works through them.
      const chunk = Number(opt['turn-chunk']);
      await new Promise((resolve) => {
        const slice = () => {
          const end = Math.min(this.count, sent + chunk);
          const frames = [];
          while (sent < end) {
            frames.push(eventFrame(this.targets[sent], this.base + sent));
            sent += 1;
          }
          publisher.send(`{"turns":[${frames.join(',')}]}`);
          if (sent < this.count) setImmediate(slice);
          else resolve();
        };
        slice();
      });
    } else {
      // As fast as the socket takes them, in slices so that receipts keep being read meanwhile.
      await new Promise((resolve) => {
        const slice = () => {
          const end = Math.min(this.count, sent + 500);
          while (sent < end) {
            publisher.send(eventFrame(this.targets[sent], this.base + sent));
            sent += 1;
          }
          if (sent < this.count) setImmediate(slice);
          else resolve();
        };
        slice();
      });
    }
    const publishWall = (performance.now() - start) / 1000;
    this.lastProgress = performance.now();
    if (this.received < this.expected) {
      await Promise.race([
        finished,
        new Promise((resolve) => {
          const check = setInterval(() => {
            if (this.received === this.expected || performance.now() - this.lastProgress > STALL_MS) {
              clearInterval(check);
              resolve();
            }
          }, 100);
        }),
      ]);
    }
    const end = this.received > 0 ? this.lastDelivery : performance.now();
    const usage = meter.stop(end);
    let lost = 0;
    let dup = 0;
    let wrong = 0;
    let clientsWithLoss = 0;
    let clientsWithDup = 0;
    let maxLost = 0;
    let maxDup = 0;
    for (const c of this.clients) {
      const l = c.expect - c.got;
      lost += l;
      dup += c.dup;
      wrong += c.wrong;
      if (l > 0) clientsWithLoss += 1;
      if (c.dup > 0) clientsWithDup += 1;
      maxLost = Math.max(maxLost, l);
      maxDup = Math.max(maxDup, c.dup);
      c.seen = null;
    }
    const closed = this.clients.filter((c) => c.conn.closedUnexpectedly).length;
    return {
      events: this.count,
      expected_deliveries: this.expected,
      deliveries: this.received,
      deliveries_per_s: usage.wall_s > 0 ? this.received / usage.wall_s : 0,
      events_per_s: usage.wall_s > 0 ? this.count / usage.wall_s : 0,
      publish_wall_s: publishWall,
      ...percentiles(this.latencies.subarray(0, this.received)),
      lost,
      duplicated: dup,
      misrouted: wrong,
      stray: this.stray,
      clients_with_loss: clientsWithLoss,
      clients_with_duplicates: clientsWithDup,
      max_lost_per_client: maxLost,
      max_duplicated_per_client: maxDup,
      clients_closed: closed,
      valid: lost === 0 && dup === 0 && wrong === 0 && closed === 0,
      server_cpu_us_per_delivery: this.received > 0 ? (usage.server_cpu_s * 1e6) / this.received : null,
      ...usage,
    };
  }
}

async function connectClients(count) {
  const rss0 = serverRssBytes();
  const meter = new Meter();
  const { conns, failures, errors } = await openMany(adapter, count, (i) => openSubscriber(adapter, i % T));
  const usage = meter.stop();
  await sleep(500);
  const rss1 = serverRssBytes();
  const clients = conns.map((conn, i) => ({ conn, thread: i % T }));
  return {
    clients,
    result: {
      clients: count,
      setup_per_s: count / usage.wall_s,
      connect_failures: failures,
      connect_errors: errors,
      subscribes_unavailable: unavailableAnswers,
      subscribes_unavailable_samples: unavailableSamples,
      server_rss_before_mb: rss0 / 1048576,
      server_rss_after_mb: rss1 / 1048576,
      server_rss_kb_per_connection: (rss1 - rss0) / 1024 / count,
      server_cpu_ms_per_connection: (usage.server_cpu_s * 1000) / count,
      ...usage,
    },
  };
}

// -- reconnect storm ------------------------------------------------------------------------------

// The subscribers' server over HTTP: its collector figures and, in restart mode, its exit
const SUB_HTTP = SUB_BASES[0].replace('ws://', 'http://');

async function serverCollector(window) {
  try {
    const response = await fetch(`${SUB_HTTP}/bench/gc${window ? '?window=true' : ''}`, { signal: AbortSignal.timeout(5000) });
    return response.ok ? await response.json() : null;
  } catch {
    return null; // a server without the endpoint: no collector figures
  }
}

function collectorWindow(before, after) {
  // The collections a phase saw: per generation, from two /bench/gc readings around it
  const diff = (key) => after[key].map((v, g) => Math.round((v - before[key][g]) * 1000) / 1000);
  return { collections: diff('collections'), paused_ms: diff('paused_ms'), longest_ms: after.longest_ms };
}

function positionOf(c) {
  // Where the client stands on its topic: its last event, else what its subscribe ack said
  const topic = topicOf(c.thread);
  if (c.conn.last) {
    const m = JSON.parse(c.conn.last);
    return { epoch: m.epoch, seq: m.seq, event_id: m.event_id };
  }
  const p = c.conn.positions?.[topic];
  return p ? { epoch: p.epoch, seq: p.seq } : null;
}

async function storm(clients, base, freshConnect) {
  const rate = Number(opt['storm-rate']);
  const capacity = Math.ceil(rate * Number(opt['storm-max-s']));
  const targets = new Uint16Array(capacity);
  const perThread = new Array(T).fill(0);
  let sent = 0;
  for (const c of clients) {
    c.seen = new Uint8Array(capacity);
    c.got = 0;
    c.dup = 0;
    c.conn.keepLast = true;
  }
  const onEvent = (c) => (n, t, threadId) => {
    const i = n - base;
    if (i < 0 || i >= capacity || threadId !== c.thread + 1) return;
    if (c.seen[i]) { c.dup += 1; return; }
    c.seen[i] = 1;
    c.got += 1;
  };
  for (const c of clients) c.conn.onEvent = onEvent(c);
  const connectCollector = await serverCollector(true); // the longest pause so far: start-up and the fresh connect
  // The reference client: never dropped, follows every topic
  const ref = await unified.connect();
  await unified.subscribeAll(ref, Array.from({ length: T }, (_, k) => topicOf(k)));
  const latency = { before: [], storm: [], after: [] };
  let window = 'before';
  let tDrop = 0;
  let slowest = { ms: 0, after_drop_ms: null };
  ref.onEvent = (n, t) => {
    if (n < base) return;
    const now = performance.now();
    latency[window].push(now - t);
    if (window === 'storm' && now - t > slowest.ms) slowest = { ms: now - t, after_drop_ms: now - tDrop };
  };

  const publisher = new Conn({ onMessage() {} }, `${BASE}${unified.publishPath}`);
  await publisher.opened();
  const start = performance.now();
  let publishing = true;
  const published = new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(capacity, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (sent < due) {
        const k = Math.floor(random() * T);
        targets[sent] = k;
        perThread[k] += 1;
        publisher.send(eventFrame(k, base + sent));
        sent += 1;
      }
      if (publishing && sent < capacity) setTimeout(tick, 5);
      else resolve();
    };
    tick();
  });

  await sleep(Number(opt['storm-lead-ms']));
  await serverCollector(true); // a new longest-pause window starts here
  const meter = new Meter();
  window = 'storm';
  tDrop = performance.now();
  const restart = opt['storm-mode'] === 'restart';
  for (const c of clients) {
    c.since = positionOf(c);
    c.conn.onEvent = null;
    if (restart) c.conn.expectClose = true;
    else c.conn.drop();
  }
  if (restart) {
    // the server exits without closing anything, as a crash or a kill -9 does
    await fetch(`${SUB_HTTP}/bench/exit`).catch(() => null);
  }
  let recovered = 0;
  let notRecovered = 0;
  let refused = 0;
  let live = 0;
  let tFirstLive = null;
  let tHalfLive = null;
  const { failures, errors } = await openMany(unified, clients.length, async (i) => {
    const c = clients[i];
    let conn;
    for (const deadline = performance.now() + 60000; ;) {
      try {
        conn = await unified.connect(subscriberBase(c.thread));
        break;
      } catch (err) {
        // while the restarted server is not listening yet: back off and try again, as clients do
        refused += 1;
        if (!restart || performance.now() > deadline) throw err;
        await sleep(50 + Math.floor(random() * 200));
      }
    }
    conn.keepLast = true;
    conn.onEvent = onEvent(c);
    const topic = topicOf(c.thread);
    const ack = await unified.subscribe(conn, topic, c.since);
    c.conn = conn;
    if (ack.positions?.[topic]?.recovered === true) recovered += 1;
    else notRecovered += 1;
    c.recovered = ack.positions?.[topic]?.recovered === true;
    live += 1;
    if (live === 1) tFirstLive = performance.now();
    if (live === Math.ceil(clients.length / 2)) tHalfLive = performance.now();
    return conn;
  });
  const tLive = performance.now();
  window = 'after';
  const collector = await serverCollector(false);
  const usage = meter.stop(tLive);
  await sleep(Number(opt['storm-tail-ms']));
  publishing = false;
  await published;
  // every client's events: all of its thread's from the phase start, replayed or live
  const expected = (c) => (c.recovered ? perThread[c.thread] : c.got);
  let last = -1;
  let lastChange = performance.now();
  for (;;) {
    let pending = 0;
    for (const c of clients) pending += Math.max(0, expected(c) - c.got);
    if (pending === 0) break;
    if (pending !== last) { last = pending; lastChange = performance.now(); }
    if (performance.now() - lastChange > STALL_MS) break;
    await sleep(50);
  }
  let lost = 0;
  let dup = 0;
  let clientsWithLoss = 0;
  for (const c of clients) {
    const l = c.recovered ? perThread[c.thread] - c.got : 0;
    lost += l;
    dup += c.dup;
    if (l > 0) clientsWithLoss += 1;
    c.seen = null;
  }
  ref.close();
  publisher.close();
  const reconnect = (tLive - tDrop) / 1000;
  return {
    clients: clients.length,
    events: sent,
    rate,
    reconnect_s: reconnect,
    fresh_connect_s: freshConnect,
    reconnect_vs_fresh: freshConnect > 0 ? reconnect / freshConnect : null,
    reconnects_per_s: clients.length / reconnect,
    reconnect_failures: failures,
    subscribes_unavailable: unavailableAnswers,
    subscribes_unavailable_samples: unavailableSamples,
    // the first client subscribed again: in restart mode, when the new process started answering
    first_live_s: tFirstLive === null ? null : (tFirstLive - tDrop) / 1000,
    half_live_s: tHalfLive === null ? null : (tHalfLive - tDrop) / 1000,
    mode: opt['storm-mode'],
    refused_attempts: refused,
    reconnect_errors: errors,
    recovered,
    not_recovered: notRecovered,
    lost,
    duplicated: dup,
    clients_with_loss: clientsWithLoss,
    valid: lost === 0 && dup === 0 && notRecovered === 0,
    reference_before: percentiles(latency.before),
    reference_storm: percentiles(latency.storm),
    reference_after: percentiles(latency.after),
    reference_storm_events: latency.storm.length,
    reference_storm_slowest: slowest, // its latency, and when it arrived (ms after the drop)
    collector,
    collector_until_storm: connectCollector,
    ...usage,
  };
}

// -- navigation -----------------------------------------------------------------------------------

async function navigation(style, a, users, count) {
  const views = (u) => [
    { kind: 'agent', id: 1, topic: 'agent:1' },
    { kind: 'thread', id: (u % T) + 1, topic: topicOf(u % T) },
  ];
  const open = (view) => (a === legacy || style === 'reconnect' ? a.connect(view) : a.connect());
  // every user starts on the dashboard (not measured)
  const { conns } = await openMany(a, users, async (u) => {
    const conn = await open(views(u)[0]);
    if (style === 'resubscribe') await a.subscribe(conn, views(u)[0].topic);
    return conn;
  });
  const opensBefore = opened;
  const latencies = [];
  let failures = 0;
  const meter = new Meter();
  await Promise.all(conns.map(async (first, u) => {
    let conn = first;
    const [dashboard, chat] = views(u);
    for (let i = 0; i < count; i++) {
      const from = i % 2 === 0 ? dashboard : chat;
      const to = i % 2 === 0 ? chat : dashboard;
      const t0 = performance.now();
      try {
        if (style === 'reconnect') {
          conn.close();
          conn = await a.connect(to);
        } else {
          await a.switch(conn, from.topic, to.topic);
        }
      } catch {
        failures += 1;
        continue;
      }
      latencies.push(performance.now() - t0);
    }
    conns[u] = conn;
  }));
  const usage = meter.stop();
  const opens = opened - opensBefore;
  for (const conn of conns) conn.close();
  const done = latencies.length;
  return {
    style,
    adapter: opt.adapter === 'plain' ? 'plain' : a === legacy ? 'legacy' : a === unified ? 'unified' : opt.adapter,
    users,
    navigations: done,
    failures,
    navigations_per_s: done / usage.wall_s,
    socket_opens: opens,
    socket_opens_per_navigation: done ? opens / done : null,
    server_cpu_us_per_navigation: done ? (usage.server_cpu_s * 1e6) / done : null,
    ...percentiles(latencies),
    ...usage,
  };
}

// -- main -----------------------------------------------------------------------------------------

async function main() {
  const phases = opt.phases.split(',').filter(Boolean);
  const result = {
    adapter: opt.adapter,
    node: process.version,
    ws: JSON.parse(readFileSync(new URL('./node_modules/ws/package.json', import.meta.url), 'utf8')).version,
    params: { clients: C, threads: T, events: M, paced_events: P, rate: RATE, payload: PAYLOAD, seed: Number(opt.seed) },
    phases: {},
  };
  const started = performance.now();
  const gen0 = process.cpuUsage();
  let clients = [];
  let publisher = null;
  let base = 0;
  const needPublisher = phases.some((p) => ['warmup', 'burst', 'paced', 'turns'].includes(p));
  if (needPublisher) {
    publisher = new Conn({ onMessage() {} }, `${BASE}${adapter.publishPath}`);
    await publisher.opened();
  }
  for (const phase of phases) {
    if (phase === 'connect' || phase === 'idle') {
      const { clients: cs, result: r } = await connectClients(C);
      clients = cs;
      result.phases.connect = r;
      if (phase === 'idle') {
        const seconds = Number(opt['idle-seconds']);
        const meter = new Meter();
        await sleep(seconds * 1000);
        const usage = meter.stop();
        const closed = clients.filter((c) => c.conn.closedUnexpectedly).length;
        result.phases.idle = {
          connections: clients.length,
          connections_closed: closed,
          server_rss_mb: serverRssBytes() / 1048576,
          server_rss_kb_per_connection: r.server_rss_kb_per_connection,
          setup_per_s: r.setup_per_s,
          ...usage,
        };
      }
    } else if (['warmup', 'burst', 'paced', 'turns'].includes(phase)) {
      const count = phase === 'warmup' ? Number(opt.warmup) : phase === 'paced' ? P : M;
      const fanout = new FanoutPhase(phase, clients, base, count);
      base += count;
      const before = await serverCollector(true); // a server without /bench/gc: null, no figures
      result.phases[phase] = await fanout.publish(publisher, phase);
      const after = await serverCollector(true);
      if (before && after) result.phases[phase].collector = collectorWindow(before, after);
      await sleep(300);
    } else if (phase === 'storm') {
      if (adapter !== unified) throw new Error('the storm phase speaks the unified protocol only');
      result.phases.storm = await storm(clients, base, result.phases.connect?.wall_s ?? 0);
      base += Number(opt['storm-max-s']) * Number(opt['storm-rate']);
    } else if (phase === 'navigation') {
      for (const entry of opt['nav-styles'].split(',').filter(Boolean)) {
        const [style, name] = entry.split('=');
        const r = await navigation(style, ADAPTERS[name], Number(opt['nav-users']), Number(opt['nav-count']));
        result.phases[`navigation_${style}`] = r;
        await sleep(500);
      }
    } else {
      throw new Error(`unknown phase ${phase}`);
    }
  }
  for (const c of clients) c.conn.close();
  if (publisher) publisher.close();
  const gen = process.cpuUsage(gen0);
  result.generator = {
    wall_s: (performance.now() - started) / 1000,
    cpu_s: (gen.user + gen.system) / 1e6,
    max_rss_mb: process.resourceUsage().maxRSS / 1024,
  };
  const text = JSON.stringify(result, null, 1);
  if (opt.out) writeFileSync(opt.out, text);
  else process.stdout.write(`${text}\n`);
  await sleep(200);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`loadgen: ${err.stack || err}\n`);
  process.exit(1);
});
