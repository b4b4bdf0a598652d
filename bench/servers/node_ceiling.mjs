// Calibration peer (not a contender): a Node.js `ws` server speaking the "plain" protocol of
// bare_websockets.py. Its only purpose is to show how many deliveries/s the load generator can
// absorb on its core when the server side costs little, i.e. that the generator is not the
// bottleneck for the Python servers.
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values: opt } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '8109' } } });
const rooms = new Map();
const wss = new WebSocketServer({ host: opt.host, port: Number(opt.port), perMessageDeflate: false, skipUTF8Validation: true });

function join(ws, topic) {
  ws.topics.add(topic);
  if (!rooms.has(topic)) rooms.set(topic, new Set());
  rooms.get(topic).add(ws);
}

function leave(ws, topic) {
  ws.topics.delete(topic);
  const members = rooms.get(topic);
  if (members) {
    members.delete(ws);
    if (members.size === 0) rooms.delete(topic);
  }
}

wss.on('connection', (ws, request) => {
  const url = new URL(request.url, 'http://x');
  if (url.pathname === '/publish') {
    const send = (m) => {
      const members = rooms.get(m.topic);
      if (!members) return;
      const text = JSON.stringify({ topic: m.topic, data: m.data });
      for (const member of members) member.send(text);
    };
    // {"turns": [...]}: one event per event-loop turn (setImmediate between events)
    let queue = Promise.resolve();
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (!m.turns) { queue = queue.then(() => send(m)); return; }
      queue = queue.then(async () => {
        for (const event of m.turns) {
          send(event);
          await new Promise((resolve) => setImmediate(resolve));
        }
      });
    });
    return;
  }
  ws.topics = new Set();
  const topic = url.searchParams.get('topic');
  if (topic) {
    join(ws, topic);
    ws.send(JSON.stringify({ op: 'ack', id: 0 }));
  }
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString());
    if (m.op === 'sub') join(ws, m.topic);
    else if (m.op === 'unsub') leave(ws, m.topic);
    ws.send(JSON.stringify({ op: 'ack', id: m.id }));
  });
  ws.on('close', () => {
    for (const t of [...ws.topics]) leave(ws, t);
  });
});
wss.on('listening', () => console.log(`node ws calibration server on ${opt.host}:${opt.port}`));
