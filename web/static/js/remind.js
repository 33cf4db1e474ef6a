/* "Remind me": a notification on this device when the show opens, through Web Push.
 *
 * The page registers the service worker (/sw.js) as it loads, but asks for permission to notify only when
 * "remind me" is tapped; then it subscribes with the server's VAPID key (GET /api/v1/push/key) and posts
 * the subscription with the broadcast (PUT /api/v1/broadcasts/{id}/push-reminder, with the CSRF token).
 * Where notifications are refused or impossible, the reminder is still kept — on the account for a
 * signed-in viewer (PUT /api/v1/broadcasts/{id}/reminder), in this browser otherwise — and the page says
 * which: its status reads set, denied or unsupported (`data-state`), in the page's language. */
(function () {
  "use strict";

  var LC = (window.LC = window.LC || {});
  var data = LC.readJson && LC.readJson("remind-data");
  if (!data) return;
  var words = data.strings || {};
  var KEY = "lc.reminders";

  function local() {
    try { return JSON.parse(window.localStorage.getItem(KEY) || "[]"); } catch (e) { return []; }
  }
  function saveLocal() {
    try { window.localStorage.setItem(KEY, JSON.stringify(reminded)); } catch (e) { /* private mode */ }
  }
  var reminded = local();
  (data.reminded || []).forEach(function (id) { if (reminded.indexOf(id) < 0) reminded.push(id); });

  var pushable = Boolean(window.isSecureContext && "serviceWorker" in navigator && "PushManager" in window &&
                         "Notification" in window);
  var registration = pushable
    ? navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () { pushable = false; return null; })
    : Promise.resolve(null);

  function paint() {
    var buttons = document.querySelectorAll(".remind-button");
    for (var i = 0; i < buttons.length; i++) {
      var id = Number(buttons[i].getAttribute("data-broadcast"));
      buttons[i].setAttribute("aria-pressed", reminded.indexOf(id) >= 0 ? "true" : "false");
    }
  }

  function statusFor(btn) {
    var box = btn.closest(".remind");
    return (box && box.querySelector(".remind-status")) || document.getElementById("remind-status");
  }

  function say(btn, state, text) {
    var el = statusFor(btn);
    if (!el) return;
    el.setAttribute("data-state", state);
    el.textContent = text;
    el.hidden = false;
  }

  function api(method, path, body) {
    var headers = { "X-CSRF-Token": data.csrf, "Accept": "application/json" };
    if (body) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, credentials: "same-origin", headers: headers,
                         body: body ? JSON.stringify(body) : undefined })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (answer) {
          if (!resp.ok) {
            var err = new Error((answer.error && answer.error.message) || words.no_answer);
            err.fromServer = true;
            throw err;
          }
          return answer;
        });
      });
  }

  function keyBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = window.atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function subscription() {
    return registration.then(function (reg) {
      if (!reg) throw new Error("no service worker");
      return navigator.serviceWorker.ready.then(function (ready) {
        return ready.pushManager.getSubscription().then(function (sub) {
          if (sub) return sub;
          return api("GET", "/api/v1/push/key").then(function (answer) {
            return ready.pushManager.subscribe({ userVisibleOnly: true,
                                                 applicationServerKey: keyBytes(answer.public_key) });
          });
        });
      });
    });
  }

  function permission() {
    if (Notification.permission !== "default") return Promise.resolve(Notification.permission);
    return new Promise(function (resolve) {  // older Safari answers through a callback
      var asked = Notification.requestPermission(resolve);
      if (asked && asked.then) asked.then(resolve);
    });
  }

  function kept(id, btn, state) {
    if (reminded.indexOf(id) < 0) reminded.push(id);
    saveLocal();
    paint();
    var holder = btn.closest(".schedule-item, #live-page") || btn;  // their state follows the room's
    var opens = holder.getAttribute("data-state") === "lobby" ? words.set_live : words.set_opens;
    var text = state === "set" ? opens : words[state];
    if (state !== "set" && data.signed_in) text += " " + words.account;
    say(btn, state, text);
  }

  function keepWithoutPush(id, btn, state) {
    if (!data.signed_in) return Promise.resolve(kept(id, btn, state));
    return api("PUT", "/api/v1/broadcasts/" + id + "/reminder").then(function () { kept(id, btn, state); });
  }

  function turnOn(id, btn) {
    if (!pushable) return keepWithoutPush(id, btn, "unsupported");
    return permission().then(function (answer) {
      if (answer !== "granted") return keepWithoutPush(id, btn, "denied");
      return subscription().then(function (sub) {
        return api("PUT", "/api/v1/broadcasts/" + id + "/push-reminder", { subscription: sub.toJSON() })
          .then(function () { kept(id, btn, "set"); });
      }, function () {
        return keepWithoutPush(id, btn, "unsupported");  // a browser with no push service to subscribe to
      });
    });
  }

  function turnOff(id, btn) {
    var push = registration.then(function (reg) {
      return reg ? reg.pushManager.getSubscription() : null;
    }).catch(function () { return null; });
    return push.then(function (sub) {
      if (sub) return api("DELETE", "/api/v1/broadcasts/" + id + "/push-reminder", { endpoint: sub.endpoint });
      if (data.signed_in) return api("DELETE", "/api/v1/broadcasts/" + id + "/reminder");
      return null;
    }).then(function () {
      reminded = reminded.filter(function (x) { return x !== id; });
      saveLocal();
      paint();
      say(btn, "off", words.off);
    });
  }

  document.addEventListener("click", function (evt) {
    var btn = evt.target.closest && evt.target.closest(".remind-button");
    if (!btn || btn.disabled) return;
    var id = Number(btn.getAttribute("data-broadcast"));
    btn.disabled = true;
    var done = reminded.indexOf(id) >= 0 ? turnOff(id, btn) : turnOn(id, btn);
    done.catch(function (err) {
      say(btn, "error", (err && err.fromServer && err.message) || words.no_answer);
    }).then(function () { btn.disabled = false; });
  });
  paint();

  LC.reminded = function (id) { return reminded.indexOf(id) >= 0; };
})();
