/* livecommerce: helpers shared by every page (no inline script anywhere: CSP is script-src 'self').
 *
 * - LC.t(key, params): a translated string from <script type="application/json" id="i18n">
 *   (base.html fills it with _() in the page's language); "{name}" placeholders are replaced.
 * - Countdowns: every `.countdown[data-until]` shows the time left as H:MM:SS or M:SS, and the
 *   text of its `data-done` attribute once the moment is reached.
 * - LC.liveSocket(...): the `/live` socket.io connection shared by the viewer page and the console.
 */
(function () {
  "use strict";

  var LC = (window.LC = window.LC || {});
  var OPEN_STATES = ["scheduled", "lobby", "live"];

  function readJson(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try {
      return JSON.parse(el.textContent || "null");
    } catch (e) {
      return null;
    }
  }

  var strings = readJson("i18n") || {};

  function t(key, params) {
    var text = Object.prototype.hasOwnProperty.call(strings, key) ? String(strings[key]) : key;
    if (params) {
      Object.keys(params).forEach(function (name) {
        text = text.split("{" + name + "}").join(String(params[name]));
      });
    }
    return text;
  }

  function locale() {
    return strings.locale || document.documentElement.getAttribute("lang") || "ko";
  }

  /** Whole won as people write it: "12,900원" in Korean, "₩12,900" in English. */
  function won(amount) {
    var n = Math.round(Number(amount) || 0).toLocaleString("en-US");
    return locale() === "en" ? "₩" + n : n + "원";
  }

  /** A count with thousands separators: 1,234. */
  function number(n) {
    return Math.round(Number(n) || 0).toLocaleString(locale() === "en" ? "en-US" : "ko-KR");
  }

  /** A count in few characters: 1.2K in English, 1.2만 in Korean. */
  function compact(n) {
    n = Math.round(Number(n) || 0);
    if (n < 1000) return String(n);
    try {
      return new Intl.NumberFormat(locale() === "en" ? "en-US" : "ko-KR",
        { notation: "compact", maximumFractionDigits: 1 }).format(n);
    } catch (e) {
      return number(n);
    }
  }

  /** `obj.<field>_ko` or `obj.<field>_en`, whichever the page's language reads (Korean as fallback). */
  function pick(obj, field) {
    if (!obj) return "";
    return obj[field + "_" + locale()] || obj[field + "_ko"] || obj[field + "_en"] || "";
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  /** Milliseconds as "M:SS", "H:MM:SS", or "2d 3:04:05" (the day form is translated). */
  function formatDuration(ms) {
    var total = Math.max(0, Math.floor(ms / 1000));
    var days = Math.floor(total / 86400);
    var hours = Math.floor((total % 86400) / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var seconds = total % 60;
    var time = hours > 0 || days > 0
      ? hours + ":" + pad(minutes) + ":" + pad(seconds)
      : minutes + ":" + pad(seconds);
    return days > 0 ? t("days", { d: days, t: time }) : time;
  }

  // -- the server's clock ----------------------------------------------------------------------
  // Countdowns and deadlines follow the server's time, not the device's (a phone's clock may be minutes
  // off): the page carries the time it was made, and events that say how long is left set it again.
  var skew = 0;
  function syncClock(serverMs) {
    if (typeof serverMs === "number" && isFinite(serverMs)) skew = serverMs - Date.now();
  }
  function now() {
    return Date.now() + skew;
  }
  syncClock(Date.parse(document.documentElement.getAttribute("data-server-now") || ""));

  function tick() {
    var now = LC.now();
    var nodes = document.querySelectorAll(".countdown[data-until]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var until = Date.parse(el.getAttribute("data-until"));
      if (isNaN(until)) continue;
      var left = until - now;
      var text;
      if (left <= 0) {
        text = el.getAttribute("data-done") || "0:00";
        el.classList.add("is-done");
      } else {
        text = formatDuration(left);
        el.classList.remove("is-done");
      }
      if (el.textContent !== text) el.textContent = text;
      if (el.parentNode && el.parentNode.classList) {
        el.parentNode.classList.toggle("is-done", left <= 0);
      }
    }
  }

  function startTicking() {
    tick();
    // Align the updates with the clock's seconds so every countdown changes together.
    setTimeout(function () {
      tick();
      setInterval(tick, 1000);
    }, 1000 - (Date.now() % 1000));
  }

  function isOpen(state) {
    return OPEN_STATES.indexOf(state) !== -1;
  }

  function setBadge(el, state) {
    if (!el) return;
    el.setAttribute("data-state", state);
    el.textContent = t("state_" + state);
  }

  /** Point a `.countdown-line` at the start (scheduled, lobby) or the end (live); hide it otherwise. */
  function setCountdown(line, state, b) {
    if (!line) return;
    line.setAttribute("data-state", state);
    if (!isOpen(state)) {
      line.hidden = true;
      return;
    }
    var live = state === "live";
    var label = line.querySelector(".countdown-label");
    var counter = line.querySelector(".countdown");
    if (label) label.textContent = t(live ? "ends_in" : "starts_in");
    if (counter) {
      counter.setAttribute("data-until", live ? b.ends_at : b.starts_at);
      counter.setAttribute("data-done", t(live ? "ending_soon" : "starting_soon"));
    }
    line.hidden = false;
    tick();
  }

  function setStatus(el, status, text) {
    if (!el) return;
    el.setAttribute("data-status", status);
    el.textContent = text;
  }

  /**
   * Connect to the `/live` namespace and join a broadcast's room.
   * opts: broadcastId, statusEl, onJoined(data), onJoinError(error), onState(event), onStatus(status),
   *       onEnding(event), onConnect(socket) — given, it is called on every (re)connection instead of the
   *       plain join (room.js joins with the last position it saw).
   * Returns the socket, or null when the socket.io client did not load.
   */
  function liveSocket(opts) {
    var statusEl = opts.statusEl;
    var status = function (name, text) {
      setStatus(statusEl, name, text);
      if (opts.onStatus) opts.onStatus(name);
    };
    if (typeof window.io !== "function") {
      status("failed", t("connect_failed"));
      return null;
    }
    status("connecting", t("connecting"));
    var socket = window.io("/live", { transports: ["websocket"], withCredentials: true });
    var attempt = 0;
    var retrying = function () {
      status("reconnecting", attempt > 0 ? t("reconnecting_attempt", { n: attempt }) : t("reconnecting"));
    };

    socket.on("connect", function () {
      attempt = 0;
      status("connected", t("connected"));
      if (opts.onConnect) {
        opts.onConnect(socket);
        return;
      }
      socket.timeout(10000).emit("join", { broadcast_id: opts.broadcastId }, function (err, ack) {
        if (err) {
          if (opts.onJoinError) opts.onJoinError({ code: "timeout", message: t("no_answer") });
        } else if (ack && ack.ok) {
          if (opts.onJoined) opts.onJoined(ack.data || {});
        } else if (opts.onJoinError) {
          opts.onJoinError((ack && ack.error) || { code: "unknown", message: t("no_answer") });
        }
      });
    });

    socket.on("disconnect", function (reason) {
      retrying();
      // The server closed the socket on purpose: socket.io does not come back by itself.
      if (reason === "io server disconnect") socket.connect();
    });

    socket.on("connect_error", function () {
      if (socket.active) {
        retrying();
      } else {
        status("failed", t("connect_failed"));
      }
    });

    socket.io.on("reconnect_attempt", function (n) {
      attempt = n;
      retrying();
    });

    socket.io.on("reconnect_failed", function () {
      status("failed", t("connect_failed"));
    });

    socket.on("broadcast:state", function (evt) {
      if (evt && evt.broadcast_id === opts.broadcastId && opts.onState) opts.onState(evt);
    });

    // The server warns a few minutes before the end of the hour.
    socket.on("broadcast:ending", function (evt) {
      if (evt && evt.broadcast_id === opts.broadcastId && opts.onEnding) opts.onEnding(evt);
    });

    return socket;
  }

  /**
   * A button that asks to be tapped again instead of a browser dialog: the first tap shows `text` on it
   * for a few seconds, a second tap within them runs `run`.
   */
  function confirmTap(btn, text, run) {
    if (btn.classList.contains("is-confirming")) {
      clearTimeout(btn._lcConfirm);
      btn.classList.remove("is-confirming");
      btn.textContent = btn.getAttribute("data-label") || btn.textContent;
      run();
      return;
    }
    if (!btn.hasAttribute("data-label")) btn.setAttribute("data-label", btn.textContent.trim());
    btn.classList.add("is-confirming");
    btn.textContent = text;
    btn._lcConfirm = setTimeout(function () {
      btn.classList.remove("is-confirming");
      btn.textContent = btn.getAttribute("data-label");
    }, 4000);
  }

  LC.readJson = readJson;
  LC.confirmTap = confirmTap;
  LC.t = t;
  LC.locale = locale;
  LC.won = won;
  LC.number = number;
  LC.compact = compact;
  LC.pick = pick;
  LC.formatDuration = formatDuration;
  LC.tick = tick;
  LC.now = now;
  LC.syncClock = syncClock;
  LC.isOpen = isOpen;
  LC.setBadge = setBadge;
  LC.setCountdown = setCountdown;
  LC.setStatus = setStatus;
  LC.liveSocket = liveSocket;

  startTicking();
})();
