/* The public schedule: "remind me" buttons, and a note in the page when a reminded show goes live.
 * Signed-in viewers' reminders are kept by the server (PUT/DELETE /api/v1/broadcasts/{id}/reminder);
 * a visitor who has not joined keeps them in this browser (localStorage). */
(function () {
  "use strict";

  var LC = window.LC;
  var data = LC && LC.readJson("schedule-data");
  if (!data) return;
  var t = LC.t;
  var KEY = "lc.reminders";
  var toast = document.getElementById("reminder-toast");

  function local() {
    try { return JSON.parse(window.localStorage.getItem(KEY) || "[]"); } catch (e) { return []; }
  }
  function saveLocal(ids) {
    try { window.localStorage.setItem(KEY, JSON.stringify(ids)); } catch (e) { /* private mode */ }
  }
  var reminded = data.signed_in ? data.reminded.slice() : local();

  function show(text, href) {
    if (!toast) return;
    toast.textContent = "";
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    toast.appendChild(a);
    toast.hidden = false;
  }

  function paint() {
    var buttons = document.querySelectorAll(".remind-button");
    for (var i = 0; i < buttons.length; i++) {
      var id = Number(buttons[i].getAttribute("data-broadcast"));
      buttons[i].setAttribute("aria-pressed", reminded.indexOf(id) >= 0 ? "true" : "false");
    }
  }

  function toggle(id, on) {
    if (!data.signed_in) {
      reminded = on ? reminded.concat([id]) : reminded.filter(function (x) { return x !== id; });
      saveLocal(reminded);
      paint();
      return;
    }
    fetch("/api/v1/broadcasts/" + id + "/reminder", {
      method: on ? "PUT" : "DELETE",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": data.csrf, "Accept": "application/json" }
    }).then(function (resp) {
      return resp.json().then(function (body) {
        if (!resp.ok) throw new Error((body.error && body.error.message) || t("no_answer"));
        reminded = on ? reminded.concat([id]) : reminded.filter(function (x) { return x !== id; });
        paint();
      });
    }).catch(function (err) {
      if (toast) { toast.textContent = err.message; toast.hidden = false; }
    });
  }

  document.addEventListener("click", function (evt) {
    var btn = evt.target.closest && evt.target.closest(".remind-button");
    if (!btn) return;
    var id = Number(btn.getAttribute("data-broadcast"));
    toggle(id, reminded.indexOf(id) < 0);
  });
  paint();

  if (typeof window.io !== "function") return;
  var socket = window.io("/live", { transports: ["websocket"], withCredentials: true });
  socket.on("connect", function () { socket.emit("schedule:watch", {}); });
  socket.on("schedule:state", function (evt) {
    var item = document.querySelector('.schedule-item[data-broadcast="' + evt.broadcast_id + '"]');
    if (item) {
      item.setAttribute("data-state", evt.state);
      LC.setBadge(item.querySelector(".state-badge"), evt.state);
    }
    if (evt.state === "live" && reminded.indexOf(evt.broadcast_id) >= 0) {
      var title = (data.titles && data.titles[evt.broadcast_id]) || "";
      show(t("reminder_live", { title: title }), "/live/" + evt.broadcast_id);
    }
  });
})();
