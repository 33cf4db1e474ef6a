/* The public schedule: the states of the shows as they change, and a note in the page when a show this
 * browser asked to be reminded of goes live. The "remind me" buttons are remind.js's. */
(function () {
  "use strict";

  var LC = window.LC;
  var data = LC && LC.readJson("schedule-data");
  if (!data) return;
  var t = LC.t;
  var toast = document.getElementById("reminder-toast");

  function show(text, href) {
    if (!toast) return;
    toast.textContent = "";
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    toast.appendChild(a);
    toast.hidden = false;
  }

  if (typeof window.io !== "function") return;
  var socket = window.io("/live", { transports: ["websocket"], withCredentials: true });
  socket.on("connect", function () { socket.emit("schedule:watch", {}); });
  socket.on("schedule:state", function (evt) {
    var item = document.querySelector('.schedule-item[data-broadcast="' + evt.broadcast_id + '"]');
    if (item) {
      item.setAttribute("data-state", evt.state);
      LC.setBadge(item.querySelector(".state-badge"), evt.state);
    }
    if (evt.state === "live" && LC.reminded && LC.reminded(evt.broadcast_id)) {
      var title = (data.titles && data.titles[evt.broadcast_id]) || "";
      show(t("reminder_live", { title: title }), "/live/" + evt.broadcast_id);
    }
  });
})();
