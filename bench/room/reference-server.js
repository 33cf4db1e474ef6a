// The reference: a plain Node.js socket.io server with the same room protocol as livecommerce's
// `/live` namespace, as far as the load generator uses it: `join` (ack) and `chat:send` (ack), each
// chat message sent to the room as one `room` envelope. No database, no stream storage.
//
// With a batch window (second argument, in ms, default 0: off) the room's envelopes are batched the way
// livecommerce batches them (livecommerce/fanout.py): the first envelope after a quiet window goes out at
// once as a `room` event; envelopes that follow within the window are sent together when it closes, as
// ONE `room:batch` event whose payload is the list of envelopes (a single one goes as `room`).
// Usage: node reference-server.js PORT [BATCH_MS]
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 8190);
const batchMs = Number(process.argv[3] || 0);
const server = http.createServer();
const io = new Server(server, { perMessageDeflate: false, cors: { origin: false } });
const live = io.of("/live");
let offset = 0;
let nextId = 1;

class Batch {
  constructor(room) {
    this.room = room;
    this.pending = [];
    this.lastSent = -Infinity;
    this.timer = null;
  }
  add(env) {
    const now = performance.now();
    if (this.timer === null && now - this.lastSent >= batchMs) {
      this.lastSent = now;
      live.to(this.room).emit("room", env);
      return;
    }
    this.pending.push(env);
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), Math.max(0, batchMs - (now - this.lastSent)));
    }
  }
  flush() {
    this.timer = null;
    if (!this.pending.length) return;
    const items = this.pending;
    this.pending = [];
    this.lastSent = performance.now();
    if (items.length === 1) live.to(this.room).emit("room", items[0]);
    else live.to(this.room).emit("room:batch", items);
  }
}

const batches = new Map();

function publish(room, env) {
  if (batchMs <= 0) {
    live.to(room).emit("room", env);
    return;
  }
  let b = batches.get(room);
  if (!b) batches.set(room, (b = new Batch(room)));
  b.add(env);
}

live.on("connection", (socket) => {
  socket.on("join", (data, ack) => {
    socket.join("broadcast:" + data.broadcast_id);
    if (typeof ack === "function") ack({ ok: true, data: { position: { epoch: "ref", offset } } });
  });
  socket.on("chat:send", (data, ack) => {
    offset += 1;
    const msg = { id: nextId++, user_id: 0, name: "ref", role: "viewer", text: data.text, at: new Date().toISOString() };
    publish("broadcast:" + data.broadcast_id, { e: "ref", o: offset, t: "chat", d: msg, ts: Date.now() / 1000 });
    if (typeof ack === "function") ack({ ok: true, data: { id: msg.id, offset } });
  });
  socket.on("heart", () => {});
});

server.listen(port, "127.0.0.1", () => console.log(JSON.stringify({ listening: port, pid: process.pid, batch_ms: batchMs })));
