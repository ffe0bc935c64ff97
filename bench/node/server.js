// Reference server for the benchmarks: what a team would write with Node socket.io 4.8 and the
// official Redis adapter. Same handshake auth (HS256 JWT in `auth.token`), same rooms
// (`event:`, `seats:`, `queue:`), same `room-info` coalescing (at most one per room per 500 ms,
// as TIKETI does) and the same two packets per seat hold (`seat-locked` + `seat-selected`).
// POST /bench/hold stands in for TIKETI's REST hold (no database: only the broadcast).
'use strict';

const http = require('http');
const { Server } = require('socket.io');
const jwt = require('jsonwebtoken');

const port = Number(process.env.PORT || 3500);
const secret = process.env.JWT_SECRET;
if (!secret) throw new Error('JWT_SECRET is required');

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end('{"status":"ok"}');
  }
  if (req.method === 'POST' && req.url === '/bench/hold') {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      let hold;
      try { hold = JSON.parse(body); } catch { hold = null; }
      if (!hold || typeof hold.eventId !== 'string' || typeof hold.seatId !== 'string') {
        res.writeHead(400);
        return res.end();
      }
      const payload = { seatId: hold.seatId, userId: hold.userId, status: 'locked', timestamp: new Date().toISOString() };
      const room = io.to(`seats:${hold.eventId}`);
      room.emit('seat-locked', payload);
      room.emit('seat-selected', payload);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end('{}');
    });
    return undefined;
  }
  res.writeHead(404);
  return res.end();
});

const io = new Server(server, { maxHttpBufferSize: 1e5, cors: { origin: '*' } });

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (!token) return next(new Error('Authentication required'));
  try {
    socket.data.user = jwt.verify(token, secret, { algorithms: ['HS256'] });
    return next();
  } catch {
    return next(new Error('Invalid authentication token'));
  }
});

const pendingRoomInfo = new Map();
function roomInfo(eventId) {
  if (pendingRoomInfo.has(eventId)) return;
  pendingRoomInfo.set(eventId, setTimeout(() => {
    pendingRoomInfo.delete(eventId);
    const room = `event:${eventId}`;
    const userCount = io.sockets.adapter.rooms.get(room)?.size ?? 0;
    io.to(room).emit('room-info', { eventId, userCount });
  }, 500));
}

const idOf = (d) => (d && typeof d.eventId === 'string' ? d.eventId : null);
io.on('connection', (socket) => {
  socket.on('join-event', (d) => {
    const id = idOf(d);
    if (!id) return;
    socket.join(`event:${id}`);
    roomInfo(id);
  });
  socket.on('join-seat-selection', (d) => {
    const id = idOf(d);
    if (id) socket.join(`seats:${id}`);
  });
  socket.on('join-queue', (d) => {
    const id = idOf(d);
    if (id) socket.join(`queue:${id}`);
  });
});

async function main() {
  if (process.env.REDIS_URL) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: 'tiketi-bench-node' }));
  }
  server.listen(port, '127.0.0.1');
}

main().catch((e) => { console.error(e); process.exit(1); });
