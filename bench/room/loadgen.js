// Load generator for the room benchmark: N real viewers speaking Socket.IO (protocol v5 over
// Engine.IO v4) on raw websockets (the `ws` package), so that the generator stays light: a frame is
// matched for its sequence numbers and send times without parsing the whole JSON (a `room` envelope or
// a `room:batch` list of them alike). Senders send chat at a total rate and read their acknowledgements:
// each one's latency (sent → ack) is measured, and refusals are counted by error code (livecommerce
// answers `{ok: false, error: {code, message}}`; an ack that never comes counts as `timeout`, a sender
// whose socket closed as `closed`). Every viewer and sender must get every message: `lost` counts the
// deliveries missing at the end for acknowledged sends, `late` those missing for sends whose ack had not
// come (or timed out): a server that fell behind. It drives livecommerce and the reference server alike.
// Usage: node loadgen.js '{"urls": ["http://127.0.0.1:8080"], "viewers": 1000, "senders": 20,
//                          "rate": 20, "seconds": 10, "broadcast": 1, "cookies": ["lc_session=..."]}'
// Output (stdout, JSON lines): {"mark": "connected"}, {"mark": "start"} when the measured window opens,
// {"mark": "end"} when it closes, then the result.
const WebSocket = require("ws");

const cfg = JSON.parse(process.argv[2]);
const NS = "/live";
const urls = cfg.urls || [cfg.url];
const total = Math.round(cfg.rate * cfg.seconds);
const ACK_TIMEOUT_MS = cfg.ack_timeout_ms || 20000;
const DRAIN_MS = cfg.drain_ms || 10000;
const HIST_MS = 120000; // delivery latencies in 1 ms buckets (Date.now() has 1 ms steps), every one counted
const hist = new Float64Array(HIST_MS + 1);
const perSeq = new Uint32Array(total); // deliveries of each message, to count what was lost
const ackedSeq = new Uint8Array(total); // 1: acknowledged ok, 2: refused with an error code (never sent out)
const ackLatencies = [];
const refusedCodes = {};
let received = 0;
let stray = 0; // chat messages in room frames that this run did not send (none expected)
let sent = 0;
let acked = 0;
let refused = 0;
let closed = 0; // sockets the server closed during the run
let finishing = false;
let nextUrl = 0;
// Behind a load balancer that sends each client address to one process (nginx's `hash $remote_addr`), the
// viewers come from several loopback addresses, as different people would.
const locals = cfg.local_addresses || null;
let nextLocal = 0;
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
    const seq = Number(m[1]);
    if (seq >= total) { stray += 1; continue; }
    received += 1;
    perSeq[seq] += 1;
    hist[Math.max(0, Math.min(HIST_MS, now - Number(m[2])))] += 1;
  }
}

function refuse(code) {
  refused += 1;
  refusedCodes[code] = (refusedCodes[code] || 0) + 1;
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
      const opts = { perMessageDeflate: false, headers: this.cookie ? { Cookie: this.cookie } : {} };
      if (locals) opts.localAddress = locals[nextLocal++ % locals.length];
      const ws = new WebSocket(url, opts);
      this.ws = ws;
      let stage = 0;
      ws.on("error", (e) => { if (stage < 3) reject(e); });
      ws.on("close", () => {
        if (stage < 3) reject(new Error("closed while connecting"));
        else if (!finishing) closed += 1;
        for (const f of this.acks.values()) f(null, "closed");
        this.acks.clear();
      });
      ws.on("message", (data) => {
        const text = data.toString();
        if (stage === 0) { stage = 1; ws.send("40" + NS + ","); return; }
        if (stage === 1) {
          if (text.startsWith("40" + NS + ",")) {
            stage = 2;
            this.call("join", { broadcast_id: cfg.broadcast }).then((ack) => {
              if (ack && ack.ok) { stage = 3; resolve(this); } else reject(new Error("join: " + JSON.stringify(ack)));
            }, reject);
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
    // resolves with the ack's payload; rejects with "timeout" or "closed"
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.acks.delete(id); reject(new Error("timeout")); }, ACK_TIMEOUT_MS);
      this.acks.set(id, (v, failure) => { clearTimeout(timer); if (failure) reject(new Error(failure)); else resolve(v); });
      this.ws.send("42" + NS + "," + id + JSON.stringify([event, data]));
    });
  }
}

function histQuantile(p, count) {
  if (!count) return null;
  const rank = Math.min(count - 1, Math.floor(p * count));
  let seen = 0;
  for (let i = 0; i <= HIST_MS; i++) {
    seen += hist[i];
    if (seen > rank) return i;
  }
  return HIST_MS;
}

function histMax() {
  for (let i = HIST_MS; i >= 0; i--) if (hist[i]) return i;
  return null;
}

async function main() {
  const t0 = Date.now();
  const viewers = [];
  const batchMs = []; // how long each group of 200 viewers took to connect and join
  for (let i = 0; i < cfg.viewers; i += 200) {
    const n = Math.min(200, cfg.viewers - i);
    const b0 = Date.now();
    viewers.push(...await Promise.all(Array.from({ length: n }, () => new Client(null).connect())));
    batchMs.push(Date.now() - b0);
    process.stderr.write(`\rconnecting ${viewers.length}/${cfg.viewers}`);
  }
  const senders = [];
  for (let i = 0; i < cfg.senders; i += 20) {
    const n = Math.min(20, cfg.senders - i);
    senders.push(...await Promise.all(Array.from({ length: n }, (_, k) =>
      new Client(cfg.cookies ? cfg.cookies[(i + k) % cfg.cookies.length] : null).connect())));
  }
  const connectMs = Date.now() - t0;
  process.stderr.write(`\rconnected ${viewers.length} viewers + ${senders.length} senders in ${connectMs} ms\n`);
  console.log(JSON.stringify({ mark: "connected" }));
  await new Promise((r) => setTimeout(r, 1000));
  received = 0; hist.fill(0); perSeq.fill(0); stray = 0; closed = 0;
  console.log(JSON.stringify({ mark: "start" }));
  const cpuStart = process.cpuUsage();
  const start = Date.now();
  let seq = 0;
  let lastShown = 0;
  // hearts: every viewer sends a `heart` event (no acknowledgement, as the page does) `cfg.hearts` times a
  // second, spread evenly over the viewers
  let heartsSent = 0;
  let heartTimer = null;
  if (cfg.hearts > 0) {
    let nextViewer = 0;
    heartTimer = setInterval(() => {
      const due = Math.floor(((Date.now() - start) / 1000) * cfg.hearts * viewers.length);
      while (heartsSent < due) {
        const v = viewers[nextViewer++ % viewers.length];
        v.ws.send("42" + NS + "," + JSON.stringify(["heart", { broadcast_id: cfg.broadcast, count: 3 }]));
        heartsSent += 1;
      }
    }, 10);
  }
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((Date.now() - start) / 1000) * cfg.rate));
      while (seq < due) {
        const s = senders[seq % senders.length];
        const mine = seq;
        sent += 1;
        const t = performance.now();
        s.call("chat:send", { broadcast_id: cfg.broadcast, text: pad(`#${seq}@${Date.now()} `, cfg.bytes || 230) })
          .then((ack) => {
            ackLatencies.push(performance.now() - t);
            if (ack && ack.ok) { acked += 1; ackedSeq[mine] = 1; } else { ackedSeq[mine] = 2; refuse(String(ack && ack.error && ack.error.code || "malformed")); }
          }, (e) => refuse(e.message === "closed" ? "closed" : "timeout"));
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
  if (heartTimer) clearInterval(heartTimer);
  const drainStart = Date.now();
  while (acked + refused < sent && Date.now() - drainStart < DRAIN_MS) await new Promise((r) => setTimeout(r, 20));
  const clients = viewers.length + senders.length;
  const expected = acked * clients;
  while (received < expected && Date.now() - drainStart < DRAIN_MS) await new Promise((r) => setTimeout(r, 50));
  const end = Date.now();
  console.log(JSON.stringify({ mark: "end" }));
  const cpu = process.cpuUsage(cpuStart);
  finishing = true;
  // lost: deliveries missing for acknowledged sends; late: those missing for sends whose ack had not come
  // when the window closed or never came (timeout): a server that fell behind
  let lost = 0;
  let late = 0;
  let duplicates = 0;
  for (let i = 0; i < sent; i++) {
    const missing = Math.max(0, clients - perSeq[i]);
    if (ackedSeq[i] === 1) lost += missing;
    else if (ackedSeq[i] === 0) late += missing;
    if (perSeq[i] > clients) duplicates += perSeq[i] - clients;
  }
  ackLatencies.sort((a, b) => a - b);
  const aq = (p) => ackLatencies.length
    ? Math.round(ackLatencies[Math.min(ackLatencies.length - 1, Math.floor(p * ackLatencies.length))] * 10) / 10 : null;
  process.stderr.write("\n");
  console.log(JSON.stringify({
    viewers: viewers.length, senders: senders.length, sent, acked, refused, refused_codes: refusedCodes,
    unanswered: sent - acked - refused, deliveries: received, expected, lost, late, duplicates, stray,
    closed_by_server: closed, connect_s: connectMs / 1000,
    connect_200_ms: batchMs.length ? { first: batchMs[0], last: batchMs[batchMs.length - 1] } : null,
    seconds: (sendEnd - start) / 1000, window: (end - start) / 1000, result: true,
    deliveries_per_s: Math.round(received / ((sendEnd - start) / 1000)),
    p50_ms: histQuantile(0.5, received), p99_ms: histQuantile(0.99, received), max_ms: histMax(),
    ack_p50_ms: aq(0.5), ack_p99_ms: aq(0.99),
    ack_max_ms: ackLatencies.length ? Math.round(ackLatencies[ackLatencies.length - 1] * 10) / 10 : null,
    loadgen_cpu_s: (cpu.user + cpu.system) / 1e6, hearts_sent: heartsSent,
  }));
  for (const c of [...viewers, ...senders]) c.ws.terminate();
  setTimeout(() => process.exit(0), 200);
}

main().catch((e) => { console.error(e); process.exit(1); });
