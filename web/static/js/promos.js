/* Coupons and giveaways on the viewer's live page (viewer/live.html): the coupon drops as cards with the
 * amount, the minimum order, the number left (live), the claim countdown and a one-tap "Claim"; the
 * giveaway with its countdown, the entries so far, how to enter, your entry number, then the winners
 * and the link to verify the draw; and a notice when you win.
 *
 * A claim carries an Idempotency-Key made once per tap (crypto.randomUUID) and kept for the retries of
 * that tap until the server has given a definitive answer, so a tap resent after a dropped connection
 * claims once.
 *
 * live.js creates it: var promos = LC.promos({broadcastId, room, signedIn}); then
 * promos.snapshot(broadcast) with the join answer's broadcast, promos.event(env) with each room event.
 * It listens itself to `coupons`, `giveaway:entries`, `you:entered` and `you:won`.
 * Strings come from <script type="application/json" id="promos-i18n">.
 */
(function () {
  "use strict";

  var LC = window.LC;
  if (!LC) return;

  function create(opts) {
    var $ = function (id) { return document.getElementById(id); };
    var root = $("promos");
    if (!root) return null;
    var strings = LC.readJson("promos-i18n") || {};
    var bid = opts.broadcastId;
    var room = opts.room;
    var list = $("coupon-drops");
    var card = $("giveaway");
    var drops = {}; // drop id -> {drop, held, left, key, busy, node}
    var giveaway = null;
    var myEntry = null;
    var wonNotice = $("won-notice");

    function t(key, params) {
      var text = Object.prototype.hasOwnProperty.call(strings, key) ? String(strings[key]) : LC.t(key);
      Object.keys(params || {}).forEach(function (name) {
        text = text.split("{" + name + "}").join(String(params[name]));
      });
      return text;
    }

    function el(tag, cls, text) {
      var node = document.createElement(tag);
      if (cls) node.className = cls;
      if (text != null) node.textContent = text;
      return node;
    }

    function newKey() {
      if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
      var bytes = new Uint8Array(16);
      window.crypto.getRandomValues(bytes);
      return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
    }

    // -- coupon drops ------------------------------------------------------------------------------

    function closed(entry) {
      var at = Date.parse(entry.drop.claim_closes_at || "");
      return !isNaN(at) && at <= LC.now();
    }

    function render(entry) {
      var d = entry.drop;
      var n = entry.node;
      var limit = Math.max(1, Number(d.per_viewer_limit) || 1);
      var full = entry.held >= limit;
      var none = entry.left <= 0;
      var over = closed(entry);
      var state = full ? "claimed" : none ? "all-claimed" : over ? "over" : "open";
      n.setAttribute("data-state", state);
      n.querySelector(".coupon-left").textContent = none ? t("all_claimed") : t("left", { n: LC.number(entry.left) });
      var btn = n.querySelector(".coupon-claim");
      var held = n.querySelector(".coupon-held");
      held.hidden = !(entry.held > 0 && !full);
      held.textContent = t("held_n", { n: entry.held });
      if (btn.tagName === "A") return; // not signed in: the button leads to joining
      var text;
      if (entry.busy) text = t("claiming");
      else if (full) text = t("claimed");
      else if (none) text = t("all_claimed");
      else if (over) text = t("claim_over");
      else if (entry.held > 0) text = t("claim_another");
      else text = t("claim");
      btn.textContent = text;
      btn.disabled = entry.busy || full || none || over;
      btn.setAttribute("aria-busy", entry.busy ? "true" : "false");
    }

    function showError(entry, text) {
      var box = entry.node.querySelector(".coupon-error");
      box.textContent = text || "";
      box.hidden = !text;
    }

    function buildCard(d) {
      var li = el("li", "card coupon-card is-new");
      li.setAttribute("data-drop", String(d.id));
      var amount = el("div", "coupon-amount");
      var label = LC.coupons.parts(d);
      var value = el("span", "coupon-value", label.main);
      if (label.cap) value.appendChild(el("span", "coupon-cap", " " + label.cap));
      amount.appendChild(value);
      amount.appendChild(el("span", "coupon-name", LC.pick(d, "name")));
      li.appendChild(amount);
      var info = el("div", "coupon-info");
      var terms = [LC.coupons.minimum(d), LC.coupons.scope(d)].filter(Boolean);
      if (Number(d.per_viewer_limit) > 1) terms.push(t("per_viewer", { n: d.per_viewer_limit }));
      if (terms.length) info.appendChild(el("p", "coupon-terms", terms.join(" · ")));
      var meta = el("p", "coupon-meta");
      meta.appendChild(el("span", "coupon-left"));
      if (d.claim_closes_at) {
        var clock = el("span", "coupon-clock");
        clock.appendChild(el("span", "coupon-clock-label", t("closes_in")));
        var counter = el("span", "countdown");
        counter.setAttribute("data-until", d.claim_closes_at);
        counter.setAttribute("data-done", t("claim_over"));
        clock.appendChild(counter);
        meta.appendChild(clock);
      }
      info.appendChild(meta);
      var held = el("p", "coupon-held");
      held.hidden = true;
      info.appendChild(held);
      li.appendChild(info);
      var btn;
      if (opts.signedIn) {
        btn = el("button", "btn btn-primary coupon-claim");
        btn.type = "button";
        btn.addEventListener("click", function () { claim(d.id); });
      } else {
        btn = el("a", "btn btn-primary coupon-claim", t("join_to_claim"));
        btn.href = "/join?next=" + encodeURIComponent("/live/" + bid);
      }
      li.appendChild(btn);
      var error = el("p", "coupon-error");
      error.setAttribute("role", "alert");
      error.hidden = true;
      li.appendChild(error);
      return li;
    }

    function addDrop(d, held) {
      if (!d || d.id == null || !list) return;
      if (d.state && d.state !== "open") {
        removeDrop(d.id);
        return;
      }
      var entry = drops[d.id];
      if (!entry) {
        entry = drops[d.id] = { drop: d, held: 0, left: d.left, key: null, busy: false, node: buildCard(d) };
        list.appendChild(entry.node);
        setTimeout(function () { entry.node.classList.remove("is-new"); }, 600);
      } else {
        entry.drop = d;
        entry.left = Math.min(entry.left, d.left); // claims only ever go up
      }
      if (typeof held === "number") entry.held = Math.max(entry.held, held);
      render(entry);
      sync();
    }

    function removeDrop(id) {
      var entry = drops[id];
      if (!entry) return;
      delete drops[id];
      if (entry.node.parentNode) entry.node.parentNode.removeChild(entry.node);
      sync();
    }

    function sync() {
      if (list) list.hidden = !Object.keys(drops).length;
      root.hidden = (!list || list.hidden) && (!card || card.hidden) && (!wonNotice || wonNotice.hidden);
      if (LC.tick) LC.tick();
    }

    function claim(id) {
      var entry = drops[id];
      if (!entry || entry.busy) return;
      if (!entry.key) entry.key = newKey(); // one key per tap, kept until the server answers for good
      entry.busy = true;
      showError(entry, "");
      render(entry);
      room.call("coupon:claim", { broadcast_id: bid, drop_id: id, idempotency_key: entry.key }, function (ack) {
        entry.busy = false;
        if (ack.ok) {
          entry.key = null; // the next tap is a new claim (a replayed answer is still this tap's one)
          entry.held += 1;
          if (entry.left > 0) entry.left -= 1;
          showError(entry, "");
          render(entry);
          if (LC.buySheet && LC.buySheet.refreshCoupons) LC.buySheet.refreshCoupons();
          return;
        }
        var e = ack.error;
        var retry = ["timeout", "offline", "unknown", "internal", "idempotency_in_flight"].indexOf(e.code) !== -1;
        if (!retry) entry.key = null; // a definitive answer: the next tap is a new claim
        if (e.code === "already_claimed") {
          entry.held = Math.max(entry.held, Math.max(1, Number(entry.drop.per_viewer_limit) || 1));
        } else if (e.code === "all_claimed") {
          entry.left = 0;
        } else if (e.code === "claim_closed") {
          entry.drop.claim_closes_at = new Date(LC.now() - 1000).toISOString();
        }
        showError(entry, e.code === "already_claimed" || e.code === "all_claimed" ? ""
          : retry ? e.message + " " + t("tap_again") : e.message);
        render(entry);
      });
    }

    function setLeft(left) {
      Object.keys(left || {}).forEach(function (id) {
        var entry = drops[id];
        if (!entry) return;
        entry.left = Math.max(0, Number(left[id]) || 0);
        render(entry);
      });
    }

    // Claim windows end on the clock: the button follows without waiting for the server's close.
    setInterval(function () {
      Object.keys(drops).forEach(function (id) {
        var entry = drops[id];
        if (!entry.busy && closed(entry) && entry.node.getAttribute("data-state") === "open") render(entry);
      });
    }, 1000);

    // -- the giveaway -------------------------------------------------------------------------------

    function gq(cls) { return card ? card.querySelector(cls) : null; }

    function showGiveawayError(text) {
      var box = gq(".giveaway-error");
      if (!box) return;
      box.textContent = text || "";
      box.hidden = !text;
    }

    function renderGiveaway() {
      if (!card) return;
      var g = giveaway;
      if (!g || g.state === "cancelled") {
        card.hidden = true;
        sync();
        return;
      }
      card.hidden = false;
      card.setAttribute("data-state", g.state);
      gq(".giveaway-prize").textContent = LC.pick(g, "prize");
      var winnersCount = Number(g.winners_count) || 1;
      gq(".giveaway-count").textContent = t("winners_count", { n: winnersCount });
      var open = g.state === "open";
      var line = gq(".giveaway-countdown-line");
      var counter = gq(".giveaway-countdown");
      line.hidden = !open;
      counter.setAttribute("data-until", open ? g.closes_at : "");
      gq(".giveaway-entries").textContent = t("entries_n", { n: LC.number(g.entries || 0) });
      var mine = myEntry && myEntry.id === g.id ? myEntry.number : null;
      var enter = gq(".giveaway-enter");
      var how = gq(".giveaway-how");
      var number = gq(".giveaway-number");
      var status = gq(".giveaway-status");
      number.hidden = mine == null;
      number.textContent = mine != null ? t("entry_number", { n: mine }) : "";
      var howText = "";
      if (open && mine == null) {
        if (g.mode === "keyword") howText = t("how_keyword", { keyword: g.keyword });
        else if (g.mode === "buyers") howText = t("how_buyers");
      }
      how.textContent = howText;
      how.hidden = !howText;
      enter.hidden = !(open && mine == null && g.mode === "button");
      if (enter.tagName === "BUTTON") {
        enter.disabled = !!card.getAttribute("data-busy");
        enter.textContent = card.getAttribute("data-busy") ? t("entering") : t("enter");
      }
      var statusText = "";
      if (g.state === "closed") statusText = t("awaiting_draw");
      else if (g.state === "drawn") statusText = t("drawn");
      status.textContent = statusText;
      status.hidden = !statusText;
      var winners = gq(".giveaway-winners");
      winners.textContent = "";
      (g.winners || []).forEach(function (w) {
        var li = el("li", "giveaway-winner");
        li.appendChild(el("span", "giveaway-winner-name", w.name));
        li.appendChild(el("span", "giveaway-winner-number", t("entry_number", { n: w.number })));
        if (mine != null && w.number === mine) {
          li.classList.add("is-me");
          li.appendChild(el("span", "badge giveaway-you", t("you")));
        }
        winners.appendChild(li);
      });
      winners.hidden = !(g.winners && g.winners.length);
      var verify = gq(".giveaway-verify");
      verify.href = g.verify_url || "/giveaways/" + g.id + "/verify";
      verify.hidden = g.state !== "drawn";
      if (g.state === "drawn" && mine != null) {
        (g.winners || []).forEach(function (w) {
          if (w.number === mine) showWon({ giveaway_id: g.id, prize_ko: g.prize_ko, prize_en: g.prize_en,
                                           number: w.number, details_url: "/giveaways/" + g.id + "/won" });
        });
      }
      sync();
    }

    function setGiveaway(g, entryNumber) {
      if (!g) {
        giveaway = null;
        renderGiveaway();
        return;
      }
      if (giveaway && giveaway.id !== g.id) showGiveawayError("");
      giveaway = g;
      if (typeof entryNumber === "number") myEntry = { id: g.id, number: entryNumber };
      renderGiveaway();
    }

    function enterGiveaway() {
      var g = giveaway;
      if (!g || card.getAttribute("data-busy")) return;
      card.setAttribute("data-busy", "1");
      showGiveawayError("");
      renderGiveaway();
      room.call("giveaway:enter", { broadcast_id: bid, giveaway_id: g.id }, function (ack) {
        card.removeAttribute("data-busy");
        if (ack.ok && ack.data) {
          myEntry = { id: ack.data.giveaway_id, number: ack.data.number };
        } else if (!ack.ok) {
          showGiveawayError(ack.error.message);
        }
        renderGiveaway();
      });
    }

    if (card) {
      var enterBtn = gq(".giveaway-enter");
      if (enterBtn && enterBtn.tagName === "BUTTON") enterBtn.addEventListener("click", enterGiveaway);
    }

    function showWon(evt) {
      if (!wonNotice || !evt) return;
      var text = $("won-text");
      var link = $("won-link");
      text.textContent = t("you_won", { prize: LC.pick(evt, "prize"), n: evt.number });
      link.href = evt.details_url || "/giveaways/" + evt.giveaway_id + "/won";
      var first = wonNotice.hidden;
      wonNotice.hidden = false;
      sync();
      if (first && room.systemLine) room.systemLine(text.textContent, "win");
    }

    // -- the room --------------------------------------------------------------------------------

    room.on("coupons", function (evt) {
      if (evt && evt.broadcast_id === bid) setLeft(evt.left);
    });
    room.on("giveaway:entries", function (evt) {
      if (!evt || evt.broadcast_id !== bid || !giveaway || giveaway.id !== evt.giveaway_id) return;
      giveaway.entries = Math.max(giveaway.entries || 0, Number(evt.entries) || 0);
      renderGiveaway();
    });
    room.on("you:entered", function (evt) {
      if (!evt || evt.broadcast_id !== bid) return;
      myEntry = { id: evt.giveaway_id, number: evt.number };
      renderGiveaway();
    });
    room.on("you:won", function (evt) {
      if (evt && evt.broadcast_id === bid) showWon(evt);
    });

    return {
      /** The join answer's broadcast: the open drops (what is not there any more has closed) and the giveaway. */
      snapshot: function (b) {
        if (!b) return;
        var c = b.coupons || { open: [], mine: [] };
        var held = {};
        (c.mine || []).forEach(function (h) {
          var id = h.drop && h.drop.id;
          if (id != null) held[id] = (held[id] || 0) + 1;
        });
        var open = {};
        (c.open || []).forEach(function (d) { open[d.id] = true; });
        Object.keys(drops).forEach(function (id) { if (!open[id]) removeDrop(id); });
        (c.open || []).forEach(function (d) { addDrop(d, held[d.id] || 0); });
        if (Object.prototype.hasOwnProperty.call(b, "giveaway")) {
          var g = b.giveaway;
          setGiveaway(g, g && typeof g.my_entry === "number" ? g.my_entry : undefined);
        }
      },
      /** A room event; true when it was one of ours. */
      event: function (env) {
        var d = env.d || {};
        switch (env.t) {
          case "coupon:drop":
            addDrop(d);
            return true;
          case "coupon:closed":
            removeDrop(d.id);
            return true;
          case "giveaway:open":
          case "giveaway:closed":
          case "giveaway:drawn":
            if (giveaway && giveaway.id === d.id && d.entries < giveaway.entries) d.entries = giveaway.entries;
            setGiveaway(d);
            return true;
          default:
            return false;
        }
      }
    };
  }

  LC.promos = create;
})();
