// The Socket.IO reference client (socket.io-client 4.8 for Node.js) in the live room, through whatever
// serves `base` (nginx in front of several processes): a host and two viewers, each from its own loopback
// address (so that nginx's address hash can send them to different processes), connecting the way a browser
// does (long-polling first, then the upgrade to a websocket). The host says three things; both viewers hear
// them; one viewer leaves, the host says two more, and the viewer comes back with the position it had and
// asks for what it missed. Prints one JSON object of what each one saw.
// Usage: node reference_client.mjs '{"base": "http://127.0.0.1:8080", "broadcast": 1, "cookie": "lc_session=…",
//                                    "addresses": ["127.0.0.2", "127.0.0.3", "127.0.0.4"]}'
import http from "node:http";
import { createRequire } from "node:module";

const require = createRequire(process.env.REFERENCE_CLIENT_MODULES + "/");
const { io } = require("socket.io-client");

const cfg = JSON.parse(process.argv[2]);
const bid = cfg.broadcast;

function connect(address, headers = {}) {
  const agent = new http.Agent({ localAddress: address, keepAlive: true });
  const socket = io(cfg.base + "/live", { agent, extraHeaders: headers, reconnection: false, timeout: 10000 });
  const seen = { chat: [], last: -1, epoch: null };
  const keep = (env) => {
    if (env.o <= seen.last) return;
    seen.last = env.o;
    seen.epoch = env.e;
    if (env.t === "chat") seen.chat.push(env.d.id);
  };
  socket.on("room", keep);
  socket.on("room:batch", (envs) => envs.forEach(keep));
  return new Promise((resolve, reject) => {
    socket.on("connect", () => resolve({ socket, seen, agent }));
    socket.on("connect_error", reject);
  });
}

async function join(client, since) {
  const answer = await client.socket.timeout(10000).emitWithAck("join", { broadcast_id: bid, ...(since ? { since } : {}) });
  if (!answer.ok) throw new Error("join refused: " + JSON.stringify(answer));
  const pos = answer.data.position;
  client.seen.last = answer.data.recovered ? Math.max(client.seen.last, pos.offset) : pos.offset;
  client.seen.epoch = pos.epoch;
  return answer.data;
}

async function say(host, text) {
  const answer = await host.socket.timeout(10000).emitWithAck("chat:send", { broadcast_id: bid, text });
  if (!answer.ok) throw new Error("chat refused: " + JSON.stringify(answer));
  return answer.data.id;
}

async function until(check, ms = 15000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

const upgraded = (client) => until(() => client.socket.io.engine.transport.name === "websocket");

const [hostAddr, oneAddr, twoAddr] = cfg.addresses;
const host = await connect(hostAddr, { Cookie: cfg.cookie });
const one = await connect(oneAddr);
const two = await connect(twoAddr);
await Promise.all([host, one, two].map(upgraded));
for (const c of [host, one, two]) await join(c);
const sent = [];
for (let i = 0; i < 3; i++) sent.push(await say(host, `기준 클라이언트 ${i}`));
await until(() => one.seen.chat.length >= 3 && two.seen.chat.length >= 3);
const position = { epoch: two.seen.epoch, offset: two.seen.last };
const twoBefore = [...two.seen.chat];
two.socket.disconnect();
two.agent.destroy();
const missed = [];
for (let i = 0; i < 2; i++) missed.push(await say(host, `놓친 말 ${i}`));
const back = await connect(twoAddr);
const answer = await join(back, position);
await until(() => one.seen.chat.length >= 5);
console.log(JSON.stringify({
  sent, missed, one: one.seen.chat, two: twoBefore, recovered: answer.recovered,
  recoveredChat: answer.events.filter((e) => e.t === "chat").map((e) => e.d.id),
  transports: [host, one, back].map((c) => c.socket.io.engine.transport.name),
}));
for (const c of [host, one, back]) { c.socket.disconnect(); c.agent.destroy(); }
process.exit(0);
