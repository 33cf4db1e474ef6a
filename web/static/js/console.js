/* The host console: go live and end the broadcast over the socket (the HTTP API when the socket
 * is down), follow the broadcast's state, and run the room (room.js): the chat with moderation on
 * each message, reports from viewers, the pinned notice, slow mode, the spotlight, and the live
 * figures. */
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
    if (room) room.setState(state);
    render();
  }

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
      if (!window.confirm(t("confirm_end"))) return;
      act("host:end", "end", t("ended_ok"));
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

  function actions(m, you) {
    if (m.role === "host" || m.role === "staff" || m.user_id === you.user_id) return [];
    return [
      {
        label: t("mod_delete"),
        danger: true,
        run: function (msg) {
          var reason = window.prompt(t("delete_prompt", { name: msg.name || "" }), "");
          if (reason === null) return;
          moderate("mod:delete", { broadcast_id: b.id, message_id: msg.id, reason: reason.trim().slice(0, 200) },
                   t("deleted_ok"));
        }
      },
      {
        label: t("mute_10"),
        run: function (msg) {
          moderate("mod:mute", { broadcast_id: b.id, user_id: msg.user_id, minutes: 10 },
                   t("muted_ok", { name: msg.name || "", minutes: 10 }));
        }
      },
      {
        label: t("mute_60"),
        run: function (msg) {
          moderate("mod:mute", { broadcast_id: b.id, user_id: msg.user_id, minutes: 60 },
                   t("muted_ok", { name: msg.name || "", minutes: 60 }));
        }
      },
      {
        label: t("ban"),
        danger: true,
        run: function (msg) {
          if (!window.confirm(t("confirm_ban", { name: msg.name || "" }))) return;
          moderate("mod:ban", { broadcast_id: b.id, user_id: msg.user_id }, t("banned_ok", { name: msg.name || "" }));
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
          showSpotlight(ack.data && ack.data.item);
          showControl(clearing ? t("spotlight_off") : t("spotlight_on", { name: btn.getAttribute("data-name") || "" }));
        } else {
          showControl(ack.error.message, "error");
        }
        render();
      });
    });
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
    onSnapshot: function (snap) {
      b.starts_at = snap.starts_at || b.starts_at;
      b.ends_at = snap.ends_at || b.ends_at;
      if (snap.state && snap.state !== b.state) apply(snap.state);
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
    onSpotlight: showSpotlight
  });

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
