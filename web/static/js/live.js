/* The viewer's live sale page: the broadcast's state without a reload (the video's overlay: the
 * countdown before the start, what happened after the end), the room's chat (room.js), hearts over the
 * video, the viewer count, the product in the spotlight (its button opens the buy sheet, buy.js), the
 * line-up in a sheet one tap away, and the coupons and the giveaway (promos.js). */
(function () {
  "use strict";

  var LC = window.LC;
  var b = LC && LC.readJson("broadcast-data");
  if (!b) return;
  var t = LC.t;

  var $ = function (id) { return document.getElementById(id); };
  var page = $("live-page");
  var badge = $("state-badge");
  var line = $("countdown-line");
  var endedLine = $("ended-line");
  var note = $("state-note");
  var statusEl = $("conn-status");
  var message = $("room-message");
  var video = document.querySelector(".player-video");
  var heartBtn = $("heart-btn");
  var heartsLayer = $("hearts-layer");
  var viewersFigure = $("viewers-figure");
  var heartsFigure = $("hearts-figure");
  var viewersCount = $("viewers-count");
  var heartsCount = $("hearts-count");
  var spot = $("spotlight");
  var overlay = $("player-overlay");
  var lineupSheet = $("lineup-sheet");
  var room = null;
  var promos = null;
  var spotItem = null;
  var hearts = { shown: 0, server: -1 };

  function showMessage(text) {
    if (!message) return;
    message.textContent = text || "";
    message.hidden = !text;
  }

  function apply(state) {
    var changed = state !== b.state;
    b.state = state;
    if (page) page.setAttribute("data-state", state);
    LC.setBadge(badge, state);
    LC.setCountdown(line, state, b);
    var open = LC.isOpen(state);
    if (endedLine) {
      endedLine.hidden = open;
      if (!open) endedLine.textContent = t(state === "ended" ? "ended_line" : "note_" + state);
    }
    if (note) note.textContent = t("note_" + state);
    var inRoom = state === "lobby" || state === "live";
    [heartBtn, viewersFigure, heartsFigure].forEach(function (el) { if (el) el.hidden = !inRoom; });
    if (overlay) {
      var before = state === "scheduled" || state === "lobby";
      overlay.setAttribute("data-state", state);
      overlay.hidden = state === "live" && !!(video || document.querySelector(".player-embed"));
      var title = $("player-overlay-title");
      if (title) title.textContent = before ? t("starting_soon") : state === "live" ? title.textContent : t("state_" + state);
      var countdown = $("player-countdown");
      if (countdown) countdown.hidden = !before;
      var schedule = $("player-schedule");
      if (schedule) schedule.hidden = open;
    }
    // Buying opens with the show and closes with it (the spotlight's button too, which has no product
    // before the first spotlight).
    document.querySelectorAll("[data-buy], #spotlight-buy").forEach(function (btn) { btn.disabled = state !== "live"; });
    var ending = $("ending-message");
    if (ending && state !== "live") ending.hidden = true; // "ends in N minutes" is over once it has ended
    if (!open) {
      // as a page opened after the end shows it: no spotlight to buy from, no connection to speak of
      if (spot) spot.hidden = true;
      if (statusEl) statusEl.hidden = true;
      if (LC.buySheet && LC.buySheet.close) LC.buySheet.close();
      closeLineup();
      var dock = document.querySelector(".live-dock");
      if (dock) dock.hidden = true;
    }
    if (video && state === "live" && video.paused) {
      var played = video.play();
      if (played && played.catch) played.catch(function () { /* autoplay refused: the controls remain */ });
    }
    if (LC.buySheet && changed) LC.buySheet.setOpen(state === "live");
    if (room) room.setState(state);
  }

  // -- the spotlight ---------------------------------------------------------------------------

  function showSpotlight(item) {
    spotItem = item && item.product ? item : null;
    if (!spot) return;
    if (!spotItem) {
      spot.hidden = true;
      return;
    }
    var p = spotItem.product;
    var img = $("spotlight-img");
    if (img) {
      img.src = p.image || img.getAttribute("src");
      img.alt = LC.pick(p, "name");
    }
    $("spotlight-name").textContent = LC.pick(p, "name");
    var usual = Number(p.price) || 0;
    var live = Number(spotItem.live_price) || 0;
    var off = usual > 0 && live < usual ? Math.floor((usual - live) * 100 / usual) : 0;
    var usualEl = $("spotlight-usual");
    usualEl.textContent = off > 0 ? LC.won(usual) : "";
    usualEl.hidden = off <= 0;
    var discount = $("spotlight-discount");
    discount.textContent = off > 0 ? off + "%" : "";
    discount.hidden = off <= 0;
    $("spotlight-price").textContent = LC.won(live);
    var buyBtn = $("spotlight-buy");
    if (buyBtn) buyBtn.setAttribute("data-buy", String(p.id));
    var unit = LC.pick(p, "unit");
    $("spotlight-unit").textContent = unit ? "/ " + unit : "";
    spot.hidden = false;
    spot.classList.remove("is-new");
    void spot.offsetWidth; // restart the entrance animation
    spot.classList.add("is-new");
  }

  // -- the line-up, one tap away ----------------------------------------------------------------

  var lineupOpener = null;

  function onLineupKey(evt) {
    if (evt.key === "Escape") closeLineup();
  }

  function openLineup() {
    if (!lineupSheet) return;
    lineupOpener = document.activeElement;
    lineupSheet.hidden = false;
    document.body.classList.add("has-sheet");
    document.addEventListener("keydown", onLineupKey);
    var panel = lineupSheet.querySelector(".sheet-panel");
    if (panel) {
      panel.setAttribute("tabindex", "-1");
      panel.focus({ preventScroll: true });
    }
  }

  function closeLineup() {
    if (!lineupSheet || lineupSheet.hidden) return;
    lineupSheet.hidden = true;
    document.removeEventListener("keydown", onLineupKey);
    if (!document.querySelector(".sheet:not([hidden])")) document.body.classList.remove("has-sheet");
    if (lineupOpener && lineupOpener.focus && document.contains(lineupOpener)) lineupOpener.focus({ preventScroll: true });
  }

  var lineupBtn = $("lineup-open");
  if (lineupBtn) lineupBtn.addEventListener("click", openLineup);
  if (lineupSheet) {
    lineupSheet.addEventListener("click", function (evt) {
      if (evt.target.closest && evt.target.closest("[data-close]")) closeLineup();
    });
  }

  // -- hearts and viewers ----------------------------------------------------------------------

  function renderHearts() {
    if (heartsCount) heartsCount.textContent = LC.compact(hearts.shown);
    if (heartsFigure) heartsFigure.title = t("hearts_total", { n: LC.number(hearts.shown) });
  }

  function counts(c) {
    if (!c) return;
    if (viewersCount && typeof c.viewers === "number") {
      viewersCount.textContent = LC.number(c.viewers);
      if (viewersFigure) viewersFigure.title = t("viewers_now", { n: LC.number(c.viewers) });
    }
    if (typeof c.hearts === "number") {
      // Taps show at once; the room's total catches up (and starts over if the server did).
      hearts.shown = c.hearts < hearts.server ? c.hearts : Math.max(hearts.shown, c.hearts);
      hearts.server = c.hearts;
      renderHearts();
    }
  }

  var floating = 0;
  function floatHeart() {
    if (!heartsLayer || floating >= 24) return;
    floating += 1;
    var h = document.createElement("span");
    h.className = "heart-float heart-float-" + (1 + Math.floor(Math.random() * 4)) +
      " heart-tone-" + (1 + Math.floor(Math.random() * 3));
    h.textContent = "♥";
    var done = function () {
      if (!h.parentNode) return;
      h.parentNode.removeChild(h);
      floating -= 1;
    };
    h.addEventListener("animationend", done);
    setTimeout(done, 2500); // reduced motion: no animationend
    heartsLayer.appendChild(h);
  }

  if (heartBtn) {
    heartBtn.addEventListener("click", function () {
      floatHeart();
      hearts.shown += 1;
      renderHearts();
      heartBtn.classList.remove("is-tapped");
      void heartBtn.offsetWidth;
      heartBtn.classList.add("is-tapped");
      if (room) room.heart();
    });
  }

  // -- the room --------------------------------------------------------------------------------

  if (!LC.isOpen(b.state)) {
    // The room of a finished broadcast is closed: nothing to connect to.
    if (statusEl) statusEl.hidden = true;
    var chatNote = $("chat-note");
    if (chatNote) chatNote.textContent = t("chat_closed");
    return;
  }

  var signedIn = page && page.getAttribute("data-signed-in") === "1";

  function applyStock(left) {
    // Units left, pushed after sales: the line-up cards and the buy sheet follow.
    Object.keys(left || {}).forEach(function (pid) {
      var el = document.querySelector('[data-stock-product="' + pid + '"]');
      if (el) el.textContent = left[pid] > 0 ? t("left_n", { n: left[pid] }) : t("sold_out_live");
      var card = document.querySelector('[data-card-product="' + pid + '"]');
      if (card) card.classList.toggle("is-sold-out", left[pid] <= 0);
    });
    if (LC.buySheet && LC.buySheet.setStock) LC.buySheet.setStock(left);
  }

  room = LC.room({
    broadcastId: b.id,
    state: b.state,
    statusEl: statusEl,
    canWrite: signedIn,
    ids: {
      list: "chat", pill: "chat-pill", banner: "chat-banner", notice: "chat-notice", noticeText: "chat-notice-text",
      note: "chat-note", slow: "chat-slow", form: "chat-form", input: "chat-input", send: "chat-send",
      counter: "chat-counter", feedback: "chat-feedback"
    },
    actions: function (m, you) {
      // Signed-in viewers may report others' messages (not the host's or staff's).
      if (!signedIn || you.user_id == null || m.user_id === you.user_id) return [];
      if (m.role === "host" || m.role === "staff") return [];
      return [{
        label: t("report"),
        run: function (msg, li) {
          var reasons = ["spam", "abuse", "personal", "off_topic"].map(function (r) {
            return { value: t("reason_" + r), label: t("reason_" + r) };
          });
          room.askReason(li, t("report_why", { name: msg.name || "" }), reasons, function (reason) {
            room.call("chat:report", { broadcast_id: b.id, message_id: msg.id, reason: reason.slice(0, 200) },
              function (ack) {
                room.feedback(ack.ok ? t("reported_ok") : ack.error.message, ack.ok ? "ok" : "error");
              });
          });
        }
      }];
    },
    onEvent: function (env) {
      if (promos && promos.event(env)) return;
      // Social proof: "김** bought Sesame oil ×2", in the chat as a quiet line.
      if (env.t !== "purchase" || !env.d) return;
      var what = (env.d.lines || []).map(function (ln) {
        return (LC.pick ? LC.pick(ln, "name") : ln.name_ko) + " ×" + ln.quantity;
      }).join(", ");
      room.systemLine(t("bought", { buyer: env.d.buyer || "", what: what }), "purchase");
    },
    onSnapshot: function (snap) {
      b.starts_at = snap.starts_at || b.starts_at;
      b.ends_at = snap.ends_at || b.ends_at;
      if (snap.state) apply(snap.state);
      if (promos) promos.snapshot(snap);
    },
    onJoined: function (data, how) {
      showMessage("");
      if (how.first) {
        var name = data.you && data.you.name;
        room.systemLine(name ? t("joined_as", { name: name }) : t("joined"));
      }
    },
    onJoinError: function (error) {
      showMessage(error.message);
      LC.setStatus(statusEl, "error", t("not_in_room"));
    },
    onBanned: function (text) {
      showMessage(text || t("you_banned"));
      if (heartBtn) heartBtn.disabled = true;
    },
    onEnding: function (evt) {
      LC.syncClock(Date.parse(b.ends_at) - evt.seconds_left * 1000);
      LC.tick();
      var el = $("ending-message");
      if (!el) return;
      el.textContent = t("ends_in_minutes", { minutes: Math.max(1, Math.round(evt.seconds_left / 60)) });
      el.hidden = false;
    },
    onState: function (evt) {
      if (evt.state === b.state) return;
      apply(evt.state);
      room.systemLine(t("state_changed", { state: t("state_" + evt.state) }));
    },
    onCounts: counts,
    onSpotlight: showSpotlight
  });
  promos = LC.promos ? LC.promos({ broadcastId: b.id, room: room, signedIn: signedIn }) : null;
  room.on("stock", function (evt) {
    if (evt && evt.broadcast_id === b.id) applyStock(evt.left);
  });
})();
