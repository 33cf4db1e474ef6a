/* The host console: go live and end the broadcast over the socket (the HTTP API when the socket
 * is down), and follow the broadcast's state as it changes. */
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
  var busy = false;
  var socket = null;

  function show(text, kind) {
    if (!message) return;
    message.textContent = text || "";
    message.className = "notice" + (kind ? " notice-" + kind : "");
    message.hidden = !text;
  }

  function render() {
    if (goLive) goLive.disabled = busy || (b.state !== "scheduled" && b.state !== "lobby");
    if (endBtn) endBtn.disabled = busy || b.state !== "live";
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
    if (socket && socket.connected) {
      socket.timeout(10000).emit(eventName, { broadcast_id: b.id }, function (err, ack) {
        done(err ? { ok: false, error: { message: t("no_answer") } } : ack);
      });
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
    return;
  }

  socket = LC.liveSocket({
    broadcastId: b.id,
    statusEl: statusEl,
    onJoined: function (data) {
      var snap = data.broadcast;
      if (snap) {
        b.starts_at = snap.starts_at || b.starts_at;
        b.ends_at = snap.ends_at || b.ends_at;
        if (snap.state && snap.state !== b.state) apply(snap.state);
      }
      if (message && message.classList.contains("notice-error") && !busy) show("");
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
    }
  });
})();
