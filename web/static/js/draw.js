/* The giveaway draw, recomputed in the viewer's browser: the same algorithm as coupons/draw.py, so
 * anyone can check a published draw with nothing but SHA-256 (crypto.subtle).
 *
 * 1. The seed is 64 lowercase hex characters (32 random bytes).
 * 2. commitment(seed) = SHA-256 of the seed's 64 ASCII characters, as lowercase hex.
 * 3. entriesDigest(entries) = SHA-256 of the entry numbers (distinct whole numbers from 0 to
 *    2^53 - 1) sorted ascending, in decimal, joined by "\n" (none at the end), as lowercase hex.
 * 4. The random stream: block k = SHA-256 of the ASCII text `${seed}:${digest}:${k}` (k = 0, 1, ...),
 *    each block read as eight unsigned big-endian 32-bit words, in order.
 * 5. A number below n without modulo bias: limit = 2^32 - (2^32 mod n); take words until one is
 *    below limit; the number is that word mod n.
 * 6. The draw: pool = the sorted entries (N of them); for i = 0 .. winners - 1,
 *    j = i + (a number below N - i), swap pool[i] and pool[j]. The winners are pool[0 .. winners - 1],
 *    the first drawn first.
 *
 * Every function returns a Promise. Errors carry a `code` (the same codes as the server's).
 * In a page: window.LiveDraw.{commitment, entriesDigest, draw, verify} (and the steps 4 and 5 as
 * words and below); in Node.js 20 or later, load
 * the file and use globalThis.LiveDraw (or require() it).
 */
(function (root) {
  "use strict";

  var WORD = 4294967296; // 2^32: exact in a double, as are all the values below
  var HEX64 = /^[0-9a-f]{64}$/;

  function fail(code, message) {
    var error = new Error(message);
    error.code = code;
    return error;
  }

  function subtle() {
    var c = root.crypto;
    if (!c || !c.subtle) throw fail("no_crypto", "This browser cannot compute SHA-256 (crypto.subtle).");
    return c.subtle;
  }

  function ascii(text) {
    return new TextEncoder().encode(text); // every text hashed here is ASCII, so UTF-8 is the same
  }

  function hex(buffer) {
    var bytes = new Uint8Array(buffer);
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  async function sha256(text) {
    return subtle().digest("SHA-256", ascii(text));
  }

  function checkSeed(seed) {
    if (typeof seed !== "string" || !HEX64.test(seed)) {
      throw fail("invalid_seed", "A draw's seed is 64 lowercase hexadecimal characters.");
    }
  }

  function checkDigest(digest) {
    if (typeof digest !== "string" || !HEX64.test(digest)) {
      throw fail("invalid_digest", "An entry digest is 64 lowercase hexadecimal characters.");
    }
  }

  function canonicalEntries(entries) {
    var numbers = Array.prototype.slice.call(entries);
    numbers.forEach(function (n) {
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
        throw fail("invalid_entry", "An entry number is a whole number from 0 to " + Number.MAX_SAFE_INTEGER + ".");
      }
    });
    numbers.sort(function (a, b) { return a - b; });
    for (var i = 1; i < numbers.length; i++) {
      if (numbers[i] === numbers[i - 1]) throw fail("duplicate_entry", "Entry number " + numbers[i] + " appears twice.");
    }
    return numbers;
  }

  async function commitment(seed) {
    checkSeed(seed);
    return hex(await sha256(seed));
  }

  async function entriesDigest(entries) {
    return hex(await sha256(canonicalEntries(entries).join("\n")));
  }

  /* The stream of 32-bit words for (seed, digest): next() resolves to the following word. */
  function words(seed, digest) {
    var counter = 0;
    var view = null;
    var offset = 32;
    return {
      next: async function () {
        if (offset >= 32) {
          view = new DataView(await sha256(seed + ":" + digest + ":" + counter));
          counter += 1;
          offset = 0;
        }
        var w = view.getUint32(offset, false); // big-endian
        offset += 4;
        return w;
      },
    };
  }

  async function below(n, stream) {
    if (!(n >= 1 && n <= WORD)) throw new RangeError("n is 1 to 2^32");
    var limit = WORD - (WORD % n);
    for (;;) {
      var w = await stream.next();
      if (w < limit) return w % n;
    }
  }

  async function draw(seed, digest, entries, winners) {
    checkSeed(seed);
    checkDigest(digest);
    var pool = canonicalEntries(entries);
    if (pool.length === 0) throw fail("no_entries", "Nobody has entered this giveaway.");
    if (!Number.isInteger(winners) || winners < 1) throw fail("invalid_winners", "A giveaway has at least one winner.");
    if (winners > pool.length) {
      throw fail("too_many_winners", "There are " + winners + " prizes but only " + pool.length + " entries.");
    }
    if ((await entriesDigest(pool)) !== digest) {
      throw fail("digest_mismatch", "The entry digest does not match the entries.");
    }
    var stream = words(seed, digest);
    for (var i = 0; i < winners; i++) {
      var j = i + (await below(pool.length - i, stream));
      var swap = pool[i];
      pool[i] = pool[j];
      pool[j] = swap;
    }
    return pool.slice(0, winners);
  }

  function sameList(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /* Recompute a published draw. Resolves to {commitmentOk, digestOk, winnersOk, ok, reason}, where
   * reason is "ok" or what failed first (seed, commitment, entries, digest, winners). */
  async function verify(seed, commitmentHex, entries, digest, winnersClaimed, count) {
    function result(c, d, w, reason) {
      return { commitmentOk: c, digestOk: d, winnersOk: w, ok: c && d && w, reason: reason };
    }
    try {
      checkSeed(seed);
    } catch (e) {
      return result(false, false, false, e.code);
    }
    var commitmentOk = (await commitment(seed)) === String(commitmentHex).trim().toLowerCase();
    var actual;
    try {
      actual = await entriesDigest(entries);
    } catch (e) {
      return result(commitmentOk, false, false, commitmentOk ? e.code : "commitment_mismatch");
    }
    var digestOk = actual === String(digest).trim().toLowerCase();
    var winnersOk;
    var failure = "winners_mismatch";
    try {
      winnersOk = sameList(await draw(seed, actual, entries, count), Array.prototype.slice.call(winnersClaimed));
    } catch (e) {
      if (!e.code) throw e;
      winnersOk = false;
      failure = e.code;
    }
    var reason = !commitmentOk ? "commitment_mismatch" : !digestOk ? "digest_mismatch" : !winnersOk ? failure : "ok";
    return result(commitmentOk, digestOk, winnersOk, reason);
  }

  var api = {
    commitment: commitment,
    entriesDigest: entriesDigest,
    draw: draw,
    verify: verify,
    words: words, // words(seed, digest).next() -> Promise of the next 32-bit word
    below: below, // below(n, stream) -> Promise of a uniform number in [0, n)
  };
  root.LiveDraw = api;
  if (typeof module === "object" && module && module.exports) module.exports = api;
})(typeof globalThis !== "undefined" ? globalThis : window);
