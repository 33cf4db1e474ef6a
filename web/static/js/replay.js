/* After the show (viewer/live.html with a recording): the chat replayed beside the recording. The messages
 * come once from /api/v1/broadcasts/{id}/replay, each with its offset from the show's real start (the
 * recording's second 0); a message is shown once the video's currentTime passes its offset, and the list
 * follows the video when it is sought back or forward. Removed messages are never sent. Each message is drawn
 * as the live chat draws it (LC.chatMessage, room.js, loaded before this file). player.js plays the
 * recording (HLS through hls.js where the browser has no native HLS). */
(function () {
  "use strict";

  var LC = window.LC;
  var b = LC && LC.readJson("broadcast-data");
  var video = document.getElementById("replay-video");
  var list = document.getElementById("replay-chat");
  var note = document.getElementById("replay-note");
  if (!b || !video || !list || !LC.chatMessage) return;
  var strings = LC.readJson("replay-i18n") || {};
  var t = function (key) { return strings[key] || LC.t(key); };
  var messages = [];
  var shown = 0; // messages[0 .. shown) are in the list

  /** The list as it was at second `now` of the show. */
  function sync() {
    var now = video.currentTime || 0;
    var wanted = 0;
    while (wanted < messages.length && messages[wanted].offset <= now) wanted += 1;
    if (wanted === shown) return;
    var stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    var back = wanted < shown;
    if (back) {
      while (list.children.length > wanted) list.removeChild(list.lastElementChild);
    } else {
      var frag = document.createDocumentFragment();
      for (var i = shown; i < wanted; i++) frag.appendChild(LC.chatMessage(messages[i]));
      list.appendChild(frag);
    }
    shown = wanted;
    if (stick || back) list.scrollTop = list.scrollHeight;
  }

  fetch("/api/v1/broadcasts/" + encodeURIComponent(b.id) + "/replay",
        { credentials: "same-origin", headers: { "Accept": "application/json" } })
    .then(function (resp) { if (!resp.ok) throw new Error(String(resp.status)); return resp.json(); })
    .then(function (data) {
      messages = (data.messages || []).slice().sort(function (x, y) { return x.offset - y.offset || x.id - y.id; });
      if (note && !messages.length) note.textContent = t("replay_no_chat");
      sync();
      list.scrollTop = list.scrollHeight;
    })
    .catch(function () { if (note) note.textContent = t("replay_failed"); });

  ["timeupdate", "seeked", "play"].forEach(function (name) { video.addEventListener(name, sync); });
})();
