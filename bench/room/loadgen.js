// Load generator for the room benchmark: N real viewers speaking Socket.IO (protocol v5 over
// Engine.IO v4) on raw websockets (the `ws` package), so that the generator stays light: a frame is
// matched for its sequence number and send time without parsing the whole JSON. Senders send chat at a
// total rate and read their acknowledgements. It drives livecommerce and the reference server alike.
// Usage: node loadgen.js '{"urls": ["http://127.0.0.1:8080"], "viewers": 1000, "senders": 20,
//                          "rate": 20, "seconds": 10, "broadcast": 1, "cookies": ["lc_session=..."]}'
const WebSocket = require("ws");

const cfg = JSON.parse(process.argv[2]);
const NS = "/live";
const urls = cfg.urls || [cfg.url];
const latencies = [];
let received = 0;
let sent = 0;
let acked = 0;
let refused = 0;
let nextUrl = 0;
const SEQ = /#(\d+)@(\d+)/g;

function pad(text, bytes) {
  // A Korean chat message of about `bytes` bytes in UTF-8 (Hangul is 3 bytes a syllable).
  const filler = "오늘 참기름 정말 고소하네요 만두도 두 팩 주문했어요 배송 빨리 와주세요 ";
  let out = text;
  let i = 0;
  while (Buffer.byteLength(out) + 3 <= bytes) out += filler[i++ % filler.length];
  return out;
}

function onFrame(text) {
  // one `room` envelope or a `room:batch` list: count every chat message in the frame
  if (!text.startsWith("42" + NS + ",[\"room")) return;
  const now = Date.now();
  SEQ.lastIndex = 0;
  let m;
  while ((m = SEQ.exec(text)) !== null) {
    received += 1;
    if (latencies.length < 400000) latencies.push(now - Number(m[2]));
  }
}

class Client {
  constructor(cookie) {
    this.cookie = cookie;
    this.acks = new Map();
    this.nextId = 0;
  }
  connect() {
    const url = urls[nextUrl++ % urls.length].replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, headers: this.cookie ? { Cookie: this.cookie } : {} });
      this.ws = ws;
      let stage = 0;
      ws.on("error", reject);
      ws.on("message", (data) => {
        const text = data.toString();
        if (stage === 0) { stage = 1; ws.send("40" + NS + ","); return; }
        if (stage === 1) {
          if (text.startsWith("40" + NS + ",")) {
            stage = 2;
            this.call("join", { broadcast_id: cfg.broadcast }).then((ack) => ack && ack.ok ? resolve(this) : reject(new Error(JSON.stringify(ack))), reject);
          }
          return;
        }
        if (text === "2") { ws.send("3"); return; }
        if (text.startsWith("43" + NS + ",")) {
          const body = text.slice(NS.length + 3);
          const id = parseInt(body, 10);
          const f = this.acks.get(id);
          if (f) { this.acks.delete(id); f(JSON.parse(body.slice(String(id).length))[0]); }
          return;
        }
        onFrame(text);
      });
    });
  }
  call(event, data) {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.acks.delete(id); reject(new Error("no answer")); }, 20000);
      this.acks.set(id, (v) => { clearTimeout(timer); resolve(v); });
      this.ws.send("42" + NS + "," + id + JSON.stringify([event, data]));
    });
  }
}

async function main() {
  const t0 = Date.now();
  const viewers = [];
  for (let i = 0; i < cfg.viewers; i += 200) {
    const n = Math.min(200, cfg.viewers - i);
    viewers.push(...await Promise.all(Array.from({ length: n }, () => new Client(null).connect())));
    process.stderr.write(`\rconnecting ${viewers.length}/${cfg.viewers}`);
  }
  const senders = [];
  for (let i = 0; i < cfg.senders; i++) senders.push(await new Client(cfg.cookies ? cfg.cookies[i % cfg.cookies.length] : null).connect());
  process.stderr.write(`\rconnected ${viewers.length} viewers + ${senders.length} senders in ${Date.now() - t0} ms\n`);
  await new Promise((r) => setTimeout(r, 1000));
  received = 0; latencies.length = 0;
  console.log(JSON.stringify({ mark: "start" }));
  const cpuStart = process.cpuUsage();
  const start = Date.now();
  const total = Math.round(cfg.rate * cfg.seconds);
  let seq = 0;
  let lastShown = 0;
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((Date.now() - start) / 1000) * cfg.rate));
      while (seq < due) {
        const s = senders[seq % senders.length];
        sent += 1;
        s.call("chat:send", { broadcast_id: cfg.broadcast, text: pad(`#${seq}@${Date.now()} `, cfg.bytes || 230) })
          .then((ack) => { if (ack && ack.ok) acked += 1; else refused += 1; }, () => { refused += 1; });
        seq += 1;
      }
      if (Date.now() - lastShown >= 1000) {
        lastShown = Date.now();
        const el = (Date.now() - start) / 1000;
        process.stderr.write(`\r${el.toFixed(0)} s  sent ${sent}/${total}  deliveries ${received}  (${Math.round(received / Math.max(el, 0.1))}/s)   `);
      }
      if (seq >= total) { clearInterval(tick); resolve(); }
    }, 5);
  });
  const sendEnd = Date.now();
  const drainStart = Date.now();
  while (acked + refused < sent && Date.now() - drainStart < 10000) await new Promise((r) => setTimeout(r, 20));
  const expected = acked * (viewers.length + senders.length);
  while (received < expected && Date.now() - drainStart < 10000) await new Promise((r) => setTimeout(r, 50));
  const end = Date.now();
  console.log(JSON.stringify({ mark: "end" }));
  const cpu = process.cpuUsage(cpuStart);
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null;
  process.stderr.write("\n");
  console.log(JSON.stringify({
    viewers: viewers.length, senders: senders.length, sent, acked, refused,
    deliveries: received, expected, lost: Math.max(0, expected - received),
    seconds: (sendEnd - start) / 1000, window: (end - start) / 1000, result: true,
    deliveries_per_s: Math.round(received / ((sendEnd - start) / 1000)),
    p50_ms: q(0.5), p99_ms: q(0.99), max_ms: latencies.length ? latencies[latencies.length - 1] : null,
    loadgen_cpu_s: (cpu.user + cpu.system) / 1e6,
  }));
  for (const c of [...viewers, ...senders]) c.ws.terminate();
  setTimeout(() => process.exit(0), 200);
}

main().catch((e) => { console.error(e); process.exit(1); });
