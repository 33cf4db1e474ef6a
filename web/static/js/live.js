/* The viewer's live sale page: join the broadcast's room and follow its state without a reload. */
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
  var chat = $("chat");
  var video = document.querySelector(".player-video");
  var joinedOnce = false;

  function showMessage(text) {
    if (!message) return;
    message.textContent = text || "";
    message.hidden = !text;
  }

  function chatLine(text) {
    if (!chat) return;
    var li = document.createElement("li");
    li.className = "chat-line chat-system";
    li.textContent = text;
    chat.appendChild(li);
    chat.scrollTop = chat.scrollHeight;
  }

  function apply(state) {
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
    if (video && state === "live" && video.paused) {
      var played = video.play();
      if (played && played.catch) played.catch(function () { /* autoplay refused: the controls remain */ });
    }
  }

  if (!LC.isOpen(b.state)) {
    // The room of a finished broadcast is closed: nothing to connect to.
    if (statusEl) statusEl.hidden = true;
    return;
  }

  LC.liveSocket({
    broadcastId: b.id,
    statusEl: statusEl,
    onJoined: function (data) {
      showMessage("");
      var snap = data.broadcast;
      if (snap) {
        b.starts_at = snap.starts_at || b.starts_at;
        b.ends_at = snap.ends_at || b.ends_at;
        apply(snap.state || b.state);
      }
      if (!joinedOnce) {
        var name = data.you && data.you.name;
        chatLine(name ? t("joined_as", { name: name }) : t("joined"));
        joinedOnce = true;
      }
    },
    onJoinError: function (error) {
      showMessage(error.message);
      LC.setStatus(statusEl, "error", t("not_in_room"));
    },
    onEnding: function (evt) {
      var el = $("ending-message");
      if (!el) return;
      el.textContent = t("ends_in_minutes", { minutes: Math.max(1, Math.round(evt.seconds_left / 60)) });
      el.hidden = false;
    },
    onState: function (evt) {
      if (evt.state === b.state) return;
      apply(evt.state);
      chatLine(t("state_changed", { state: t("state_" + evt.state) }));
    }
  });
})();
