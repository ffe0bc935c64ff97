// A line protocol around the real socket.io-client, for the Rust tests (tests/api/realtime.rs).
// stdin, one JSON command per line:
//   {"op":"connect","id":"a","url":"http://127.0.0.1:PORT","token":"…","join":[["join-event",{…}]]}
//       joins are emitted inside the `connect` handler, as the frontend does
//   {"op":"emit","id":"a","event":"join-queue","data":{…}}
//   {"op":"disconnect","id":"a"}
//   {"op":"raw","id":"r","url":"ws://…","frames":["40{…}","42[…"]}   raw Engine.IO frames over `ws`
// stdout, one JSON line per thing that happened: {"id":"a","event":"<name>","data":…}
//   with the pseudo events "connect", "connect_error" (data = message), "disconnect" (data = reason),
//   "upgrade" (data = the new transport's name),
//   "raw-open", "raw-message", "raw-close".
import readline from 'node:readline';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

const sockets = new Map();
const out = (id, event, data) => process.stdout.write(JSON.stringify({ id, event, data: data ?? null }) + '\n');

function connect({ id, url, token, join = [], transports = ['websocket', 'polling'] }) {
  const s = io(url, { auth: token === undefined ? undefined : { token }, transports, reconnection: false, forceNew: true });
  sockets.set(id, s);
  s.on('connect', () => {
    for (const [event, data] of join) s.emit(event, data);
    out(id, 'connect', { sid: s.id });
  });
  s.io.on('open', () => s.io.engine.on('upgrade', (t) => out(id, 'upgrade', t.name)));
  s.on('connect_error', (e) => out(id, 'connect_error', e.message));
  s.on('disconnect', (reason) => out(id, 'disconnect', reason));
  s.onAny((event, data) => out(id, event, data));
}

function raw({ id, url, frames = [] }) {
  const ws = new WebSocket(url);
  sockets.set(id, ws);
  ws.on('open', () => {
    out(id, 'raw-open');
    for (const f of frames) ws.send(f);
  });
  ws.on('message', (m) => out(id, 'raw-message', m.toString().slice(0, 200)));
  ws.on('close', (code) => out(id, 'raw-close', code));
  ws.on('error', (e) => out(id, 'raw-error', e.message));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === 'connect') connect(cmd);
  else if (cmd.op === 'raw') raw(cmd);
  else if (cmd.op === 'emit') sockets.get(cmd.id)?.emit(cmd.event, cmd.data);
  else if (cmd.op === 'send') sockets.get(cmd.id)?.send(cmd.frame);
  else if (cmd.op === 'disconnect') {
    const s = sockets.get(cmd.id);
    if (s?.disconnect) s.disconnect(); else s?.close();
  }
});
rl.on('close', () => process.exit(0));
