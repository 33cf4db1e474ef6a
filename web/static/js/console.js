/* The host console: go live and end the broadcast over the socket (the HTTP API when the socket
 * is down), follow the broadcast's state, and run the room (room.js): the chat with moderation on
 * each message, reports from viewers, the pinned notice, slow mode, the spotlight, the live
 * figures, the coupons (drop one now, follow what is claimed) and the giveaway (start, close, draw). */
(function () {
  "use strict";

  var LC = window.LC;
  var b = LC && LC.readJson("broadcast-data");
  if (!b) return;
  var cfg = LC.readJson("console-data") || {};
  var t = LC.t;

  var $ = function (id) { return document.getElementById(id); };
  var root = $("console");
  var badge = $("state-badge");
  var line = $("countdown-line");
  var endedLine = $("ended-line");
  var statusEl = $("conn-status");
  var message = $("console-message");
  var goLive = $("go-live");
  var endBtn = $("end-broadcast");
  var noticeForm = $("notice-form");
  var noticeInput = $("notice-input");
  var noticePin = $("notice-pin");
  var noticeClear = $("notice-clear");
  var slowSelect = $("slow-select");
  var controlMessage = $("control-message");
  var reportLink = $("report-link");
  var clock = $("console-clock");
  var clockLeft = $("console-clock-left");
  var spotButtons = Array.prototype.slice.call(document.querySelectorAll(".spot-btn"));
  var busy = false;
  var room = null;
  var inRoom = false;
  var current = { notice: "", slow: 0, spotlight: null };
  var reports = { count: 0, byMessage: {} };
  var controlTimer = null;

  function show(text, kind) {
    if (!message) return;
    message.textContent = text || "";
    message.className = "notice" + (kind ? " notice-" + kind : "");
    message.hidden = !text;
  }

  function showControl(text, kind) {
    if (!controlMessage) return;
    clearTimeout(controlTimer);
    controlMessage.textContent = text || "";
    controlMessage.setAttribute("data-kind", kind || "ok");
    controlMessage.hidden = !text;
    if (text && kind !== "error") controlTimer = setTimeout(function () { controlMessage.hidden = true; }, 4000);
  }

  function socket() {
    return room && room.socket;
  }

  function render() {
    renderPromos();
    if (goLive) goLive.disabled = busy || (b.state !== "scheduled" && b.state !== "lobby");
    if (endBtn) endBtn.disabled = busy || b.state !== "live";
    var can = inRoom && LC.isOpen(b.state);
    [noticeInput, noticePin, slowSelect].forEach(function (el) { if (el) el.disabled = !can; });
    if (noticeClear) noticeClear.disabled = !can || !current.notice;
    spotButtons.forEach(function (btn) { btn.disabled = !can || !!btn.getAttribute("data-busy"); });
  }

  function apply(state) {
    b.state = state;
    if (root) root.setAttribute("data-state", state);
    LC.setBadge(badge, state);
    LC.setCountdown(line, state, b);
    var open = LC.isOpen(state);
    if (endedLine) {
      endedLine.hidden = open;
      if (!open) endedLine.textContent = t(state === "ended" ? "ended_line" : "note_" + state);
    }
    if (reportLink) reportLink.hidden = state !== "ended";
    if (clock) clock.hidden = !open;
    if (clockLeft && b.ends_at) clockLeft.setAttribute("data-until", b.ends_at);
    if (room) room.setState(state);
    render();
  }

  // -- the hour's clock: always in sight, red once the warning before the end is near -----------

  function tickClock() {
    if (!clock || clock.hidden || !b.ends_at) return;
    var left = (new Date(b.ends_at).getTime() - LC.now()) / 1000;
    var warn = Number(clock.getAttribute("data-warn")) || 300;
    if (left <= warn) clock.setAttribute("data-urgent", "");
    else clock.removeAttribute("data-urgent");
  }
  tickClock();
  setInterval(tickClock, 1000);

  function viaHttp(action) {
    var url = "/api/v1/broadcasts/" + encodeURIComponent(b.id) + "/" + action;
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": cfg.csrf_token || "" }
    }).then(function (resp) {
      return resp.json().then(function (body) {
        if (resp.ok) return { ok: true, data: body };
        return { ok: false, error: (body && body.error) || { message: t("no_answer") } };
      }, function () {
        return { ok: false, error: { message: t("no_answer") } };
      });
    }, function () {
      return { ok: false, error: { message: t("no_answer") } };
    });
  }

  function act(eventName, action, okText) {
    busy = true;
    render();
    show(t("sending"), "info");
    var done = function (ack) {
      busy = false;
      if (ack && ack.ok) {
        if (ack.data && ack.data.state) apply(ack.data.state);
        show(okText, "success");
      } else {
        show((ack && ack.error && ack.error.message) || t("no_answer"), "error");
      }
      render();
    };
    var s = socket();
    if (s && s.connected) {
      room.call(eventName, { broadcast_id: b.id }, done);
    } else {
      viaHttp(action).then(done);
    }
  }

  if (goLive) {
    goLive.addEventListener("click", function () {
      act("host:go_live", "go-live", t("went_live"));
    });
  }
  if (endBtn) {
    endBtn.addEventListener("click", function () {
      LC.confirmTap(endBtn, t("confirm_end_tap"), function () { act("host:end", "end", t("ended_ok")); });
    });
  }
  render();

  if (!LC.isOpen(b.state)) {
    if (statusEl) statusEl.hidden = true;
    var chatNote = $("chat-note");
    if (chatNote) chatNote.textContent = t("chat_closed");
    return;
  }

  // -- the live figures ----------------------------------------------------------------------

  function setFigure(id, value) {
    var el = $(id);
    if (el) el.textContent = LC.number(value);
  }

  function renderReports() {
    setFigure("fig-reports", reports.count);
    var box = $("fig-reports-box");
    if (box) box.classList.toggle("has-reports", reports.count > 0);
  }

  // -- moderation on each message ---------------------------------------------------------------

  function markReported(li, mid) {
    var reasons = reports.byMessage[mid];
    if (!li || !reasons) return;
    li.classList.add("is-reported");
    var tag = li.querySelector(".chat-report");
    if (!tag) {
      tag = document.createElement("p");
      tag.className = "chat-report";
      li.insertBefore(tag, li.querySelector(".chat-actions")); // under the line, above the actions
    }
    var shown = reasons.filter(function (r) { return r; });
    tag.textContent = shown.length ? t("reported_reason", { n: reasons.length, reason: shown.join(" · ") })
                                   : t("reported_n", { n: reasons.length });
  }

  function moderate(name, data, okText) {
    room.call(name, data, function (ack) {
      room.feedback(ack.ok ? okText : ack.error.message, ack.ok ? "ok" : "error");
    });
  }

  var UNDO_SECONDS = 5;

  function reasons() {
    return ["spam", "abuse", "personal", "off_topic"].map(function (r) {
      return { value: t("reason_" + r), label: t("reason_" + r) };
    });
  }

  /** Each action on a message happens in the page: pick a reason where one is asked, then a few seconds to undo. */
  function actions(m, you) {
    if (m.role === "host" || m.role === "staff" || m.user_id === you.user_id) return [];
    var who = function (msg) { return msg.name || ""; };
    return [
      {
        label: t("mod_delete"),
        danger: true,
        run: function (msg, li) {
          room.askReason(li, t("delete_why", { name: who(msg) }), reasons(), function (reason) {
            room.withUndo(li, t("deleting"), UNDO_SECONDS, function () {
              moderate("mod:delete", { broadcast_id: b.id, message_id: msg.id, reason: reason.slice(0, 200) },
                       t("deleted_ok"));
            });
          });
        }
      },
      {
        label: t("mute_10"),
        run: function (msg, li) {
          room.withUndo(li, t("muting", { name: who(msg), minutes: 10 }), UNDO_SECONDS, function () {
            moderate("mod:mute", { broadcast_id: b.id, user_id: msg.user_id, minutes: 10 },
                     t("muted_ok", { name: who(msg), minutes: 10 }));
          });
        }
      },
      {
        label: t("mute_60"),
        run: function (msg, li) {
          room.withUndo(li, t("muting", { name: who(msg), minutes: 60 }), UNDO_SECONDS, function () {
            moderate("mod:mute", { broadcast_id: b.id, user_id: msg.user_id, minutes: 60 },
                     t("muted_ok", { name: who(msg), minutes: 60 }));
          });
        }
      },
      {
        label: t("ban"),
        danger: true,
        run: function (msg, li) {
          room.askReason(li, t("ban_why", { name: who(msg) }), reasons(), function (reason) {
            room.withUndo(li, t("banning", { name: who(msg) }), UNDO_SECONDS, function () {
              moderate("mod:ban", { broadcast_id: b.id, user_id: msg.user_id, reason: reason.slice(0, 200) },
                       t("banned_ok", { name: who(msg) }));
            });
          });
        }
      }
    ];
  }

  // -- notice, slow mode, spotlight --------------------------------------------------------------

  function setSlowSelect(seconds) {
    if (!slowSelect) return;
    var value = String(seconds || 0);
    var found = Array.prototype.some.call(slowSelect.options, function (o) { return o.value === value; });
    if (!found) {
      var opt = document.createElement("option");
      opt.value = value;
      opt.textContent = t("seconds_short", { seconds: value });
      slowSelect.appendChild(opt);
    }
    slowSelect.value = value;
  }

  var awaited = null; // the host's last move, until the room brings it back

  function spotlightFromRoom(item) {
    var id = item && item.product ? item.product.id : null;
    if (awaited && Date.now() < awaited.until && id !== awaited.id) return; // an older move's copy
    awaited = null;
    showSpotlight(item);
  }

  function showSpotlight(item) {
    current.spotlight = item && item.product ? item.product.id : null;
    spotButtons.forEach(function (btn) {
      var on = Number(btn.getAttribute("data-product")) === current.spotlight;
      btn.textContent = on ? t("spotlight_clear") : t("spotlight");
      btn.classList.toggle("btn-live", on);
      btn.classList.toggle("btn-ghost", !on);
      btn.setAttribute("aria-pressed", on ? "true" : "false");
      var li = btn.closest(".running-item");
      if (li) {
        li.classList.toggle("is-spotlit", on);
        var tag = li.querySelector(".spot-tag");
        if (tag) tag.hidden = !on;
      }
    });
  }

  spotButtons.forEach(function (btn) {
    btn.addEventListener("click", function () {
      var pid = Number(btn.getAttribute("data-product"));
      var clearing = current.spotlight === pid;
      btn.setAttribute("data-busy", "1");
      render();
      room.call("host:spotlight", { broadcast_id: b.id, product_id: clearing ? null : pid }, function (ack) {
        btn.removeAttribute("data-busy");
        if (ack.ok) {
          var item = ack.data && ack.data.item;
          // the room's copy of an earlier move may still be on its way: until this move's own copy comes
          // back (or a few seconds pass), an older one must not undo what the host sees
          awaited = { id: item && item.product ? item.product.id : null, until: Date.now() + 5000 };
          showSpotlight(item);
          showControl(clearing ? t("spotlight_off") : t("spotlight_on", { name: btn.getAttribute("data-name") || "" }));
        } else {
          showControl(ack.error.message, "error");
        }
        render();
      });
    });
  });

  // -- keyboard: J or → spotlights the next product, K or ← the one before, 0 clears it ------------

  function typing(el) {
    if (!el || el === document.body) return false;
    var tag = (el.tagName || "").toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || el.isContentEditable;
  }

  function spotlightStep(step) {
    var usable = spotButtons.filter(function (btn) { return !btn.disabled; });
    if (!usable.length || usable.length !== spotButtons.length) return; // not in the room, or a move in flight
    var at = -1;
    spotButtons.forEach(function (btn, i) {
      if (Number(btn.getAttribute("data-product")) === current.spotlight) at = i;
    });
    var next = at < 0 ? (step > 0 ? 0 : spotButtons.length - 1) : at + step;
    if (next < 0 || next >= spotButtons.length) return; // the ends of the running order
    spotButtons[next].click();
  }

  document.addEventListener("keydown", function (evt) {
    if (evt.defaultPrevented || evt.altKey || evt.ctrlKey || evt.metaKey || typing(evt.target)) return;
    if (document.body.classList.contains("has-sheet")) return;
    var key = evt.key;
    if (key === "j" || key === "J" || key === "ArrowRight") {
      spotlightStep(1);
    } else if (key === "k" || key === "K" || key === "ArrowLeft") {
      spotlightStep(-1);
    } else if (key === "0") {
      if (current.spotlight === null) return;
      var on = spotButtons.filter(function (btn) { return Number(btn.getAttribute("data-product")) === current.spotlight; });
      if (on.length && !on[0].disabled) on[0].click();
    } else {
      return;
    }
    evt.preventDefault();
  });

  function sendNotice(text) {
    room.call("host:notice", { broadcast_id: b.id, text: text }, function (ack) {
      if (ack.ok) {
        current.notice = (ack.data && ack.data.text) || "";
        if (noticeInput && !current.notice) noticeInput.value = "";
        showControl(current.notice ? t("notice_pinned") : t("notice_cleared"));
      } else {
        showControl(ack.error.message, "error");
      }
      render();
    });
  }

  if (noticeForm) {
    noticeForm.addEventListener("submit", function (evt) {
      evt.preventDefault();
      var text = noticeInput ? noticeInput.value.trim() : "";
      if (!text) {
        showControl(t("notice_empty"), "error");
        return;
      }
      sendNotice(text);
    });
  }
  if (noticeClear) noticeClear.addEventListener("click", function () { sendNotice(""); });

  if (slowSelect) {
    slowSelect.addEventListener("change", function () {
      var seconds = Number(slowSelect.value) || 0;
      room.call("host:slow_mode", { broadcast_id: b.id, seconds: seconds }, function (ack) {
        if (ack.ok) {
          showControl(seconds ? t("slow_set", { seconds: seconds }) : t("slow_off"));
        } else {
          setSlowSelect(current.slow); // as it still is
          showControl(ack.error.message, "error");
        }
      });
    });
  }

  // -- coupons and giveaways -----------------------------------------------------------------------

  var ps = LC.readJson("promo-i18n") || {};
  function pt(key, params) {
    var text = Object.prototype.hasOwnProperty.call(ps, key) ? String(ps[key]) : t(key);
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
  function showIn(box, text, kind) {
    if (!box) return;
    clearTimeout(box._timer);
    box.textContent = text || "";
    box.setAttribute("data-kind", kind || "ok");
    box.hidden = !text;
    if (text && kind !== "error") box._timer = setTimeout(function () { box.hidden = true; }, 5000);
  }

  var dropForm = $("drop-form");
  var dropTemplate = $("drop-template");
  var dropQuantity = $("drop-quantity");
  var dropNow = $("drop-now");
  var dropList = $("drop-list");
  var couponMessage = $("coupon-message");
  var gwForm = $("giveaway-form");
  var gwStart = $("gw-start");
  var gwMode = $("gw-mode");
  var gwMessage = $("giveaway-message");
  var promo = { templates: [], drops: {}, giveaway: null, dropping: false, gwBusy: false, fresh: false };

  function canAct() {
    return inRoom && b.state === "live";
  }

  function renderPromos() {
    if (!promo) return; // the first render comes before this part of the page is set up
    var can = canAct();
    Array.prototype.forEach.call(document.querySelectorAll(".promo-live-only"), function (n) {
      n.hidden = b.state === "live";
    });
    if (dropTemplate) dropTemplate.disabled = !promo.templates.length;
    if (dropQuantity) dropQuantity.disabled = !promo.templates.length;
    if (dropNow) dropNow.disabled = !can || promo.dropping || !promo.templates.length || !dropTemplate.value;
    var g = promo.giveaway;
    var running = g && (g.state === "open" || g.state === "closed") && !promo.fresh;
    if (gwForm) gwForm.hidden = !!(g && !promo.fresh);
    if (gwStart) gwStart.disabled = !can || promo.gwBusy;
    var close = $("gw-close");
    var draw = $("gw-draw");
    if (close) {
      close.hidden = !(g && g.state === "open");
      close.disabled = !can || promo.gwBusy;
    }
    if (draw) {
      draw.hidden = !running;
      draw.disabled = !inRoom || promo.gwBusy;
    }
  }

  function templateTerms(tpl) {
    return [LC.coupons.label(tpl), LC.coupons.minimum(tpl), LC.coupons.scope(tpl)].filter(Boolean).join(" · ");
  }

  function loadTemplates() {
    if (!dropTemplate) return;
    fetch("/api/v1/broadcasts/" + encodeURIComponent(b.id) + "/coupon-templates", {
      credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (resp) {
      return resp.ok ? resp.json() : Promise.reject(resp.status);
    }).then(function (list) {
      promo.templates = Array.isArray(list) ? list : [];
      dropTemplate.textContent = "";
      var first = el("option", null, pt("choose_coupon"));
      first.value = "";
      dropTemplate.appendChild(first);
      promo.templates.forEach(function (tpl) {
        var o = el("option", null, LC.pick(tpl, "name") + " · " + LC.coupons.label(tpl));
        o.value = String(tpl.id);
        dropTemplate.appendChild(o);
      });
      if (promo.templates.length === 1) dropTemplate.value = String(promo.templates[0].id);
      var none = $("drop-none");
      if (none) none.hidden = promo.templates.length > 0;
      templateChosen();
    }).catch(function () {
      dropTemplate.textContent = "";
      dropTemplate.appendChild(el("option", null, pt("loading_failed")));
      showIn(couponMessage, pt("loading_failed"), "error");
    });
  }

  function templateChosen() {
    var tpl = null;
    promo.templates.forEach(function (x) { if (String(x.id) === dropTemplate.value) tpl = x; });
    var terms = $("drop-terms");
    if (terms) terms.textContent = tpl ? templateTerms(tpl) : "";
    if (dropQuantity) dropQuantity.placeholder = tpl ? pt("default_quantity", { n: LC.number(tpl.quantity) }) : "";
    render();
  }

  function dropNode(entry) {
    var d = entry.drop;
    var li = el("li", "drop-item");
    li.setAttribute("data-drop", String(d.id));
    var head = el("p", "drop-item-head");
    head.appendChild(el("strong", "drop-item-name", LC.pick(d, "name")));
    head.appendChild(el("span", "badge drop-state"));
    li.appendChild(head);
    li.appendChild(el("p", "muted small drop-item-terms", templateTerms(d)));
    var bar = el("progress", "drop-progress");
    bar.max = Math.max(1, d.quantity);
    li.appendChild(bar);
    var figures = el("p", "drop-item-figures");
    figures.appendChild(el("span", "drop-claimed"));
    figures.appendChild(el("span", "drop-redeemed"));
    var clock = el("span", "drop-clock");
    clock.appendChild(el("span", "countdown-label", pt("claim_within") + " "));
    var counter = el("span", "countdown");
    counter.setAttribute("data-done", pt("drop_closed"));
    clock.appendChild(counter);
    figures.appendChild(clock);
    li.appendChild(figures);
    return li;
  }

  function renderDrop(entry) {
    var d = entry.drop;
    var li = entry.node;
    li.setAttribute("data-state", d.state);
    var label = d.state === "planned" ? pt("drop_planned", { minute: d.planned_minute })
      : pt("drop_" + (d.state || "open"));
    var badge = li.querySelector(".drop-state");
    badge.textContent = label;
    badge.setAttribute("data-state", d.state);
    var bar = li.querySelector(".drop-progress");
    bar.max = Math.max(1, d.quantity);
    bar.value = Math.min(d.claimed, d.quantity);
    li.querySelector(".drop-claimed").textContent = pt("claimed_of", { claimed: LC.number(d.claimed),
                                                                     quantity: LC.number(d.quantity) });
    var redeemed = li.querySelector(".drop-redeemed");
    var hasRedeemed = typeof d.redeemed === "number"; // given when the server sends it
    redeemed.hidden = !hasRedeemed;
    redeemed.textContent = hasRedeemed ? " · " + pt("redeemed_n", { n: LC.number(d.redeemed) }) : "";
    var clock = li.querySelector(".drop-clock");
    var counter = clock.querySelector(".countdown");
    var ticking = d.state === "open" && d.claim_closes_at;
    clock.hidden = !ticking;
    counter.setAttribute("data-until", ticking ? d.claim_closes_at : "");
  }

  function upsertDrop(d, keepFigures) {
    if (!d || d.id == null || !dropList) return;
    var entry = promo.drops[d.id];
    if (!entry) {
      entry = promo.drops[d.id] = { drop: d, node: null };
      entry.node = dropNode(entry);
      dropList.insertBefore(entry.node, dropList.firstChild); // newest first
    } else {
      var was = entry.drop;
      entry.drop = d;
      if (keepFigures) d.claimed = Math.max(d.claimed || 0, was.claimed || 0); // claims only go up
      if (typeof d.redeemed !== "number" && typeof was.redeemed === "number") d.redeemed = was.redeemed;
    }
    renderDrop(entry);
    var empty = $("drop-empty");
    if (empty) empty.hidden = Object.keys(promo.drops).length > 0;
    LC.tick();
  }

  function setDropFigures(map, field) {
    Object.keys(map || {}).forEach(function (id) {
      var entry = promo.drops[id];
      if (!entry) return;
      var v = map[id];
      if (field === "left") {
        entry.drop.claimed = Math.max(entry.drop.claimed || 0, entry.drop.quantity - Number(v));
      } else {
        if (typeof v.claimed === "number") entry.drop.claimed = Math.max(entry.drop.claimed || 0, v.claimed);
        if (typeof v.quantity === "number") entry.drop.quantity = v.quantity;
        if (typeof v.redeemed === "number") entry.drop.redeemed = v.redeemed;
      }
      renderDrop(entry);
    });
  }

  function loadDrops() {
    fetch("/api/v1/broadcasts/" + encodeURIComponent(b.id) + "/drops", {
      credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (resp) { return resp.ok ? resp.json() : []; }).then(function (list) {
      (Array.isArray(list) ? list : []).forEach(function (d) {
        if (d.state !== "cancelled") upsertDrop(d, true);
      });
    }).catch(function () { /* the room's events still fill the list */ });
  }

  if (dropTemplate) dropTemplate.addEventListener("change", templateChosen);
  if (dropForm) {
    dropForm.addEventListener("submit", function (evt) {
      evt.preventDefault();
      var id = Number(dropTemplate.value);
      if (!id || promo.dropping) return;
      var payload = { broadcast_id: b.id, template_id: id };
      var q = parseInt(dropQuantity.value, 10);
      if (q > 0) payload.quantity = q;
      promo.dropping = true;
      render();
      room.call("host:coupon_drop", payload, function (ack) {
        promo.dropping = false;
        if (ack.ok && ack.data) {
          upsertDrop(ack.data, true);
          dropQuantity.value = "";
          showIn(couponMessage, pt("dropped", { name: LC.pick(ack.data, "name"), n: LC.number(ack.data.quantity) }));
        } else {
          showIn(couponMessage, ack.error.message, "error");
        }
        render();
      });
    });
  }

  // the giveaway

  function gwLabel(state) { return pt("gw_" + state); }

  function renderGiveaway() {
    var g = promo.giveaway;
    var box = $("gw-current");
    if (!box) return;
    box.hidden = !g || promo.fresh;
    if (!g) {
      render();
      return;
    }
    var state = $("gw-state");
    state.textContent = gwLabel(g.state);
    state.setAttribute("data-state", g.state);
    $("gw-prize").textContent = LC.pick(g, "prize");
    $("gw-how").textContent = g.mode === "keyword" ? pt("how_keyword", { keyword: g.keyword })
      : pt("how_" + g.mode);
    $("gw-entries").textContent = LC.number(g.entries || 0);
    $("gw-winners-count").textContent = LC.number(g.winners_count || 0);
    var line = $("gw-countdown-line");
    line.hidden = g.state !== "open";
    $("gw-countdown").setAttribute("data-until", g.state === "open" ? g.closes_at : "");
    var winners = $("gw-winner-list");
    winners.textContent = "";
    (g.winners || []).forEach(function (w) {
      var li = el("li", "giveaway-winner");
      li.appendChild(el("span", "giveaway-winner-name", w.name));
      li.appendChild(el("span", "giveaway-winner-number", pt("entry_number", { n: w.number })));
      winners.appendChild(li);
    });
    winners.hidden = !(g.winners && g.winners.length);
    var verify = $("gw-verify");
    verify.href = g.verify_url || "/giveaways/" + g.id + "/verify";
    verify.hidden = g.state !== "drawn";
    $("gw-new").hidden = !(g.state === "drawn" || g.state === "cancelled");
    LC.tick();
    render();
  }

  function setGiveaway(g) {
    if (g && promo.giveaway && promo.giveaway.id === g.id) {
      g.entries = Math.max(g.entries || 0, promo.giveaway.entries || 0);
    }
    if (g && (!promo.giveaway || promo.giveaway.id !== g.id)) promo.fresh = false;
    promo.giveaway = g || null;
    renderGiveaway();
  }

  function giveawayCall(name, okText) {
    var g = promo.giveaway;
    if (!g || promo.gwBusy) return;
    promo.gwBusy = true;
    render();
    room.call(name, { broadcast_id: b.id, giveaway_id: g.id }, function (ack) {
      promo.gwBusy = false;
      if (ack.ok && ack.data) {
        setGiveaway(ack.data);
        showIn(gwMessage, okText);
      } else {
        showIn(gwMessage, ack.error.message, "error");
      }
      render();
    });
  }

  if (gwMode) {
    var syncMode = function () { $("gw-keyword-field").hidden = gwMode.value !== "keyword"; };
    gwMode.addEventListener("change", syncMode);
    syncMode();
  }
  if (gwForm) {
    gwForm.addEventListener("submit", function (evt) {
      evt.preventDefault();
      if (promo.gwBusy) return;
      var payload = {
        broadcast_id: b.id,
        prize_ko: $("gw-prize-ko").value.trim(),
        prize_en: $("gw-prize-en").value.trim(),
        winners: parseInt($("gw-winners").value, 10) || 1,
        mode: gwMode.value,
        keyword: $("gw-keyword").value.trim(),
        minutes: parseInt($("gw-minutes").value, 10) || 3
      };
      if (!payload.prize_ko) {
        showIn(gwMessage, pt("prize_missing"), "error");
        $("gw-prize-ko").focus();
        return;
      }
      if (payload.mode === "keyword" && !payload.keyword.replace(/^#/, "")) {
        showIn(gwMessage, pt("keyword_missing"), "error");
        $("gw-keyword").focus();
        return;
      }
      promo.gwBusy = true;
      render();
      room.call("host:giveaway_start", payload, function (ack) {
        promo.gwBusy = false;
        if (ack.ok && ack.data) {
          promo.fresh = false;
          setGiveaway(ack.data);
          showIn(gwMessage, pt("started"));
        } else {
          showIn(gwMessage, ack.error.message, "error");
        }
        render();
      });
    });
  }
  var gwClose = $("gw-close");
  if (gwClose) gwClose.addEventListener("click", function () { giveawayCall("host:giveaway_close", pt("closed_ok")); });
  var gwDraw = $("gw-draw");
  if (gwDraw) {
    gwDraw.addEventListener("click", function () {
      var g = promo.giveaway;
      if (!g) return;
      LC.confirmTap(gwDraw, t("confirm_tap"), function () { giveawayCall("host:giveaway_draw", pt("drawn_ok")); });
    });
  }
  var gwNew = $("gw-new");
  if (gwNew) {
    gwNew.addEventListener("click", function () {
      promo.fresh = true; // the form again; the last giveaway stays on the viewers' page until the next one
      renderGiveaway();
      $("gw-prize-ko").focus();
    });
  }

  function promoSnapshot(snap) {
    var c = snap.coupons;
    if (c && c.open) {
      var open = {};
      c.open.forEach(function (d) { open[d.id] = true; upsertDrop(d, true); });
      Object.keys(promo.drops).forEach(function (id) {
        var entry = promo.drops[id];
        if (entry.drop.state === "open" && !open[id]) {
          entry.drop.state = "closed";
          renderDrop(entry);
        }
      });
    }
    if (Object.prototype.hasOwnProperty.call(snap, "giveaway")) setGiveaway(snap.giveaway);
  }

  function promoEvent(env) {
    var d = env.d || {};
    switch (env.t) {
      case "coupon:drop":
        upsertDrop(d, true);
        break;
      case "coupon:closed":
        if (promo.drops[d.id]) {
          promo.drops[d.id].drop.state = "closed";
          renderDrop(promo.drops[d.id]);
        }
        break;
      case "giveaway:open":
      case "giveaway:closed":
      case "giveaway:drawn":
        setGiveaway(d);
        break;
    }
  }

  // -- the room ------------------------------------------------------------------------------------

  room = LC.room({
    broadcastId: b.id,
    state: b.state,
    statusEl: statusEl,
    canWrite: true,
    ids: {
      list: "chat", pill: "chat-pill", banner: "chat-banner", notice: "chat-notice", noticeText: "chat-notice-text",
      note: "chat-note", slow: "chat-slow", form: "chat-form", input: "chat-input", send: "chat-send",
      counter: "chat-counter", feedback: "chat-feedback"
    },
    actions: actions,
    decorate: function (li, m) { markReported(li, m.id); },
    onEvent: promoEvent,
    onSnapshot: function (snap) {
      b.starts_at = snap.starts_at || b.starts_at;
      b.ends_at = snap.ends_at || b.ends_at;
      if (snap.state && snap.state !== b.state) apply(snap.state);
      promoSnapshot(snap);
    },
    onJoined: function () {
      inRoom = true;
      // Reports reach the moderators' room: enter it again after every (re)join.
      room.call("host:watch", { broadcast_id: b.id }, function (ack) {
        if (!ack.ok) showControl(ack.error.message, "error");
      });
      if (message && message.classList.contains("notice-error") && !busy) show("");
      render();
    },
    onJoinError: function (error) {
      show(error.message, "error");
      LC.setStatus(statusEl, "error", t("not_in_room"));
    },
    onEnding: function (evt) {
      LC.syncClock(Date.parse(b.ends_at) - evt.seconds_left * 1000);
      tickClock();
      LC.tick();
      show(t("ends_in_minutes", { minutes: Math.max(1, Math.round(evt.seconds_left / 60)) }), "warning");
    },
    onState: function (evt) {
      if (evt.state !== b.state) apply(evt.state);
    },
    onCounts: function (c) {
      if (typeof c.viewers === "number") setFigure("fig-viewers", c.viewers);
      if (typeof c.hearts === "number") setFigure("fig-hearts", c.hearts);
    },
    onNotice: function (text) {
      current.notice = text;
      if (noticeInput && document.activeElement !== noticeInput) noticeInput.value = text;
      render();
    },
    onSlowMode: function (seconds) {
      current.slow = seconds;
      setSlowSelect(seconds);
    },
    onSpotlight: spotlightFromRoom
  });

  room.on("figures", function (f) {
    if (f && f.broadcast_id === b.id && LC.figures) LC.figures.update(f);
  });
  room.on("coupons", function (evt) {
    if (evt && evt.broadcast_id === b.id) setDropFigures(evt.left, "left");
  });
  room.on("coupons:figures", function (evt) {
    if (evt && evt.broadcast_id === b.id) setDropFigures(evt.drops, "figures");
  });
  room.on("giveaway:entries", function (evt) {
    var g = promo.giveaway;
    if (!evt || evt.broadcast_id !== b.id || !g || g.id !== evt.giveaway_id) return;
    g.entries = Math.max(g.entries || 0, Number(evt.entries) || 0);
    renderGiveaway();
  });
  loadTemplates();
  loadDrops();

  room.on("disconnect", function () {
    inRoom = false;
    render();
  });

  room.on("mod:reported", function (evt) {
    if (!evt || evt.broadcast_id !== b.id) return;
    var list = reports.byMessage[evt.message_id] || (reports.byMessage[evt.message_id] = []);
    list.push(evt.reason || "");
    reports.count += 1;
    renderReports();
    var li = room.message(evt.message_id);
    markReported(li, evt.message_id);
    room.feedback(t("report_arrived"), "warning");
  });
  renderReports();
})();
