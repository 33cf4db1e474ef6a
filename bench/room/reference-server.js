// The reference: a plain Node.js socket.io server with the same room protocol as livecommerce's
// `/live` namespace, as far as the load generator uses it: `join` (ack) and `chat:send` (ack), each
// chat message sent to the room as one `room` envelope. No database, no stream storage.
// Usage: node reference-server.js PORT
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 8190);
const server = http.createServer();
const io = new Server(server, { perMessageDeflate: false, cors: { origin: false } });
const live = io.of("/live");
let offset = 0;
let nextId = 1;

live.on("connection", (socket) => {
  socket.on("join", (data, ack) => {
    socket.join("broadcast:" + data.broadcast_id);
    if (typeof ack === "function") ack({ ok: true, data: { position: { epoch: "ref", offset } } });
  });
  socket.on("chat:send", (data, ack) => {
    offset += 1;
    const msg = { id: nextId++, user_id: 0, name: "ref", role: "viewer", text: data.text, at: new Date().toISOString() };
    live.to("broadcast:" + data.broadcast_id).emit("room", { e: "ref", o: offset, t: "chat", d: msg, ts: Date.now() / 1000 });
    if (typeof ack === "function") ack({ ok: true, data: { id: msg.id, offset } });
  });
  socket.on("heart", () => {});
});

server.listen(port, "127.0.0.1", () => console.log(JSON.stringify({ listening: port, pid: process.pid })));
