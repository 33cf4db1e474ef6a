/* A giveaway's proof page (viewer/verify.html): "Verify in my browser" recomputes, with draw.js
 * (window.LiveDraw) and nothing but SHA-256, the commitment from the seed, the digest from the entry
 * list and the winners from both, on the proof embedded in the page (<script type="application/json"
 * id="proof-data">), and says whether each matches what was published. The search box finds an
 * entry number (or a masked name) in the list. */
(function () {
  "use strict";

  var LC = window.LC || {};
  var $ = function (id) { return document.getElementById(id); };
  var proof = LC.readJson ? LC.readJson("proof-data") : null;
  if (!proof) return;
  var strings = (LC.readJson && LC.readJson("verify-i18n")) || {};

  function t(key, params) {
    var text = Object.prototype.hasOwnProperty.call(strings, key) ? String(strings[key]) : key;
    Object.keys(params || {}).forEach(function (name) {
      text = text.split("{" + name + "}").join(String(params[name]));
    });
    return text;
  }

  // The command line names this server: its public address, or the one the page was opened at.
  var cli = $("cli-line");
  if (cli && !cli.getAttribute("data-origin") && window.location && window.location.origin) {
    cli.textContent = "livecommerce giveaway verify --giveaway " + proof.id + " --url " + window.location.origin;
  }

  var numbers = (proof.entry_list || []).map(function (e) { return e.number; });
  var claimed = (proof.winners || []).slice().sort(function (a, b) { return a.rank - b.rank; })
    .map(function (w) { return w.number; });

  function short(hash) {
    return hash && hash.length > 20 ? hash.slice(0, 12) + "…" + hash.slice(-6) : String(hash || "");
  }

  function check(id, ok, text) {
    var li = $(id);
    if (!li) return;
    li.setAttribute("data-ok", ok === null ? "wait" : ok ? "yes" : "no");
    li.querySelector(".verify-mark").textContent = ok === null ? "…" : ok ? "✓" : "✗";
    li.querySelector(".verify-check-text").textContent = text;
  }

  function verdict(text, ok) {
    var box = $("verify-result");
    var line = $("verify-verdict");
    box.hidden = false;
    box.setAttribute("data-ok", ok === null ? "wait" : ok ? "yes" : "no");
    line.textContent = text;
  }

  async function run() {
    var D = window.LiveDraw;
    var btn = $("verify-run");
    btn.disabled = true;
    btn.textContent = t("running");
    try {
      if (!D || !window.crypto || !window.crypto.subtle) throw Object.assign(new Error("no crypto"), { code: "no_crypto" });
      var digest = await D.entriesDigest(numbers);
      var digestOk = !!proof.digest && digest === proof.digest;
      check("check-digest", digestOk, digestOk ? t("digest_ok") : t("digest_bad", { hash: short(digest) }));
      if (!proof.seed) {
        check("check-commitment", null, t("commitment_wait"));
        check("check-winners", null, t("winners_wait"));
        verdict(digestOk ? t("digest_only_ok") : t("failed"), digestOk ? null : false);
        return;
      }
      var result = await D.verify(proof.seed, proof.commitment, numbers, proof.digest, claimed, proof.winners_count);
      var commitment = await D.commitment(proof.seed);
      check("check-commitment", result.commitmentOk,
            result.commitmentOk ? t("commitment_ok") : t("commitment_bad", { hash: short(commitment) }));
      check("check-digest", result.digestOk, result.digestOk ? t("digest_ok") : t("digest_bad", { hash: short(digest) }));
      var again = null;
      try {
        again = await D.draw(proof.seed, digest, numbers, proof.winners_count);
      } catch (e) {
        if (!e.code) throw e;
      }
      var list = again ? again.map(function (n) { return "#" + n; }).join(", ") : "";
      check("check-winners", result.winnersOk, result.winnersOk ? t("winners_ok", { numbers: list })
        : again ? t("winners_bad", { numbers: list }) : t("winners_error", { reason: result.reason }));
      verdict(result.ok ? t("all_ok") : t("failed"), result.ok);
    } catch (e) {
      verdict(e && e.code === "no_crypto" ? t("no_crypto") : String((e && e.message) || e), false);
    } finally {
      btn.disabled = false;
      btn.textContent = btn.getAttribute("data-label") || btn.textContent;
    }
  }

  var runBtn = $("verify-run");
  if (runBtn && !runBtn.disabled) {
    runBtn.setAttribute("data-label", runBtn.textContent);
    runBtn.addEventListener("click", function () { run(); });
  }

  // -- "check my entry number" ----------------------------------------------------------------------

  var search = $("entry-search");
  var table = $("entry-table");
  var found = $("entry-search-result");
  if (search && table) {
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr"));
    var won = {};
    claimed.forEach(function (n) { won[n] = true; });
    var timer = null;
    var filter = function () {
      var q = search.value.trim();
      var n = /^#?\d+$/.test(q) ? Number(q.replace("#", "")) : null;
      var shown = 0;
      rows.forEach(function (tr) {
        var match = !q || (n !== null ? Number(tr.getAttribute("data-number")) === n
                                      : tr.textContent.toLowerCase().indexOf(q.toLowerCase()) !== -1);
        tr.hidden = !match;
        tr.classList.toggle("is-found", !!q && match);
        if (match) shown += 1;
      });
      if (!q) found.textContent = "";
      else if (n !== null) found.textContent = shown ? t(won[n] ? "search_won" : "search_found", { n: n }) : t("search_missing", { n: n });
      else found.textContent = t("search_matches", { n: shown });
    };
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(filter, 120);
    });
  }
})();
