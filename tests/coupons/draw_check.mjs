// Runs web/static/js/draw.js in Node.js on the cases read from stdin (JSON) and prints what it
// computes (JSON), for tests/coupons/test_draw.py to compare with coupons/draw.py.
//
// A case is one of:
//   {"seed", "entries", "winners", "digest"?, "verify"?: [seed, commitment, entries, digest, claimed, count]}
//     -> {"commitment", "digest", "winners", "verify"?} (a failed step gives {"error": code})
//   {"words": [seed, digest, how_many]} -> the first words of the stream
//   {"below": [n, [word, ...]]} -> the number below n taken from those words
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const source = fileURLToPath(new URL("../../web/static/js/draw.js", import.meta.url));
vm.runInThisContext(readFileSync(source, "utf8"), { filename: source });
const { commitment, entriesDigest, draw, verify, words, below } = globalThis.LiveDraw;

async function attempt(step) {
  try {
    return await step();
  } catch (e) {
    if (!e.code) throw e;
    return { error: e.code };
  }
}

async function run(c) {
  if (c.words) {
    const [seed, digest, howMany] = c.words;
    const stream = words(seed, digest);
    const out = [];
    for (let i = 0; i < howMany; i++) out.push(await stream.next());
    return out;
  }
  if (c.below) {
    const [n, given] = c.below;
    let i = 0;
    return below(n, { next: async () => given[i++] });
  }
  const out = {};
  out.commitment = await attempt(() => commitment(c.seed));
  out.digest = await attempt(() => entriesDigest(c.entries));
  out.winners = await attempt(() => draw(c.seed, c.digest ?? out.digest, c.entries, c.winners));
  if (c.verify) out.verify = await verify(...c.verify);
  return out;
}

const cases = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const c of cases) results.push(await run(c));
process.stdout.write(JSON.stringify(results));
