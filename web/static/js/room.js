/* The live room, shared by the viewer page (live.js) and the host console (console.js): the chat, the
 * pinned notice, slow mode, hearts, and the room's event stream kept whole across reconnections.
 *
 * Room events come as `room` (one envelope {e: epoch, o: offset, t: type, d: data, ts}) or `room:batch`
 * (a list of them). The room remembers the last position it applied; an envelope seen before is dropped,
 * and a gap (an offset beyond the next one, or another epoch) makes it join again with `since`, as every
 * reconnection does: the server answers with exactly the events missed (`recovered: true`) or, when it
 * cannot, with the whole current state, which replaces what the page shows.
 *
 * Usage: var room = LC.room({broadcastId, state, statusEl, canWrite, ids: {...}, actions(msg),
 *   decorate(li, msg), onJoined(data), onJoinError(error), onSnapshot(broadcast), onState(evt),
 *   onEnding(evt), onCounts(counts), onSpotlight(item), onNotice(text), onSlowMode(seconds), onEvent(env)});
 * then room.call(event, data, done), room.heart(), room.setState(state), room.feedback(text, kind),
 * room.on(event, fn), room.socket; and for actions on a message, in the page (never a browser dialog):
 * room.askReason(li, title, reasons, pick) shows the reasons to pick from under the message, and
 * room.withUndo(li, text, seconds, commit) waits a few seconds with an "Undo" before doing it.
 */
(function () {
  "use strict";

  var LC = window.LC;
  if (!LC) return;
  var t = LC.t;

  var HEART_EVERY_MS = 300; // hearts are sent at most this often...
  var HEART_MAX = 50; // ...and at most this many at once (the server's limit)
  var MAX_LINES = 250; // chat lines kept on the page
  var LONG_PRESS_MS = 550;

  function staffLike(role) {
    return role === "host" || role === "staff";
  }

  /** A chat message as the room shows it: the name, a badge for the host or staff, the text. The live chat
   * adds its own marks and actions to it; the replay (replay.js) shows it as it is. */
  function chatMessage(m) {
    var li = document.createElement("li");
    li.className = "chat-msg";
    li.setAttribute("data-id", String(m.id));
    li.setAttribute("data-role", m.role || "viewer");
    var line = document.createElement("p");
    line.className = "chat-msg-line";
    var name = document.createElement("span");
    name.className = "chat-name";
    name.textContent = m.name || "";
    line.appendChild(name);
    if (staffLike(m.role)) {
      var badge = document.createElement("span");
      badge.className = "badge role-badge chat-badge";
      badge.setAttribute("data-role", m.role);
      badge.textContent = t("role_" + m.role);
      line.appendChild(badge);
    }
    var text = document.createElement("span");
    text.className = "chat-text";
    text.textContent = m.text || ""; // never innerHTML: people typed it
    line.appendChild(text);
    li.appendChild(line);
    return li;
  }

  function room(opts) {
    var id = opts.broadcastId;
    var ids = opts.ids || {};
    var $ = function (name) { return ids[name] ? document.getElementById(ids[name]) : null; };
    var list = $("list");
    var pill = $("pill");
    var banner = $("banner");
    var noticeBox = $("notice");
    var noticeText = $("noticeText");
    var note = $("note");
    var slowLine = $("slow");
    var form = $("form");
    var input = $("input");
    var sendBtn = $("send");
    var counter = $("counter");
    var feedbackEl = $("feedback");
    var maxLength = input ? Number(input.getAttribute("maxlength")) || 300 : 300;

    var st = {
      pos: null, // {epoch, offset}: the last room event applied
      joining: false,
      seq: 0,
      buffer: [], // envelopes that arrived while a join was on its way
      inRoom: false,
      everJoined: false,
      rejoins: [],
      you: { user_id: null, role: null, name: "" },
      state: opts.state,
      slow: 0,
      slowUntil: 0,
      mutedUntil: 0,
      banned: false,
      sending: false,
      status: "connecting"
    };
    var messages = {}; // message id -> its <li>
    var uid = 0;
    var feedbackTimer = null;
    var retryTimer = null;
    var socket = null;

    // -- the chat list -----------------------------------------------------------------------

    function atBottom() {
      return !list || list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    }

    function toBottom() {
      if (!list) return;
      list.scrollTop = list.scrollHeight;
      if (pill) pill.hidden = true;
    }

    function trim() {
      while (list && list.children.length > MAX_LINES) {
        var first = list.firstElementChild;
        var mid = first.getAttribute("data-id");
        if (mid) delete messages[mid];
        list.removeChild(first);
      }
    }

    function append(li) {
      if (!list) return;
      var stick = atBottom();
      list.appendChild(li);
      trim();
      if (stick) toBottom();
      else if (pill) pill.hidden = false;
    }

    function systemLine(text, kind) {
      if (!list || !text) return;
      var li = document.createElement("li");
      li.className = "chat-line chat-system" + (kind ? " chat-system-" + kind : "");
      li.textContent = text;
      append(li);
    }

    function closeMenus(except) {
      if (!list) return;
      var open = list.querySelectorAll(".chat-msg.is-open");
      for (var i = 0; i < open.length; i++) {
        if (open[i] !== except) setMenu(open[i], false);
      }
    }

    function setMenu(li, open) {
      var bar = li.querySelector(".chat-actions");
      var more = li.querySelector(".chat-more");
      if (!bar) return;
      bar.hidden = !open;
      li.classList.toggle("is-open", open);
      if (more) more.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) {
        closeMenus(li);
        var stick = atBottom();
        if (stick || li === list.lastElementChild) toBottom();
      }
    }

    function messageNode(m) {
      var li = chatMessage(m);
      if (m.user_id != null && m.user_id === st.you.user_id) li.classList.add("is-mine");

      var actions = opts.actions ? opts.actions(m, st.you) || [] : [];
      if (actions.length) {
        var barId = "chat-actions-" + m.id + "-" + (++uid);
        var more = document.createElement("button");
        more.type = "button";
        more.className = "chat-more";
        more.setAttribute("aria-label", t("more_actions", { name: m.name || "" }));
        more.setAttribute("aria-expanded", "false");
        more.setAttribute("aria-controls", barId);
        more.textContent = "⋯";
        more.addEventListener("click", function () {
          setMenu(li, !li.classList.contains("is-open"));
        });
        li.appendChild(more);
        var bar = document.createElement("div");
        bar.className = "chat-actions";
        bar.id = barId;
        bar.hidden = true;
        actions.forEach(function (a) {
          var btn = document.createElement("button");
          btn.type = "button";
          btn.className = "btn btn-small " + (a.danger ? "btn-danger" : "btn-ghost");
          btn.textContent = a.label;
          btn.addEventListener("click", function () {
            setMenu(li, false);
            a.run(m, li);
          });
          bar.appendChild(btn);
        });
        li.appendChild(bar);
        longPress(li);
      }
      if (opts.decorate) opts.decorate(li, m);
      return li;
    }

    /** A long press on a message (touch) opens its actions, as the ⋯ button does. */
    function longPress(li) {
      var timer = null;
      var cancel = function () {
        if (timer) clearTimeout(timer);
        timer = null;
      };
      li.addEventListener("pointerdown", function (evt) {
        if (evt.pointerType === "mouse" || (evt.target.closest && evt.target.closest("button"))) return;
        cancel();
        timer = setTimeout(function () {
          timer = null;
          setMenu(li, true);
        }, LONG_PRESS_MS);
      });
      ["pointerup", "pointercancel", "pointerleave", "pointermove"].forEach(function (name) {
        li.addEventListener(name, function (evt) {
          if (name === "pointermove" && evt.pointerType !== "touch") return;
          if (name === "pointermove" && Math.abs(evt.movementX || 0) + Math.abs(evt.movementY || 0) < 4) return;
          cancel();
        });
      });
      li.addEventListener("contextmenu", function (evt) {
        if (evt.target.closest && evt.target.closest("button")) return;
        evt.preventDefault();
        cancel();
        setMenu(li, true);
      });
    }

    /** Under a message: a title and a button per reason ({value, label}); pick(value) on a tap, nothing on Cancel. */
    function askReason(li, title, reasons, pick) {
      closeAsks(li);
      var box = document.createElement("div");
      box.className = "chat-reasons";
      box.setAttribute("role", "group");
      box.setAttribute("aria-label", title);
      var label = document.createElement("p");
      label.className = "chat-reasons-label";
      label.textContent = title;
      box.appendChild(label);
      var done = function () { if (box.parentNode) box.parentNode.removeChild(box); };
      reasons.forEach(function (r) {
        var btn = document.createElement("button");
        btn.type = "button";
        btn.className = "btn btn-small btn-ghost";
        btn.textContent = r.label;
        btn.setAttribute("data-reason", r.value);
        btn.addEventListener("click", function () { done(); pick(r.value); });
        box.appendChild(btn);
      });
      var cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "btn btn-small btn-ghost";
      cancel.textContent = t("cancel");
      cancel.addEventListener("click", done);
      box.appendChild(cancel);
      keepBottom(function () { li.appendChild(box); });
      var first = box.querySelector("button");
      if (first) first.focus({ preventScroll: true });
    }

    function closeAsks(li) {
      var old = li.querySelectorAll(".chat-reasons");
      for (var i = 0; i < old.length; i++) old[i].parentNode.removeChild(old[i]);
    }

    /** Say what is about to happen, with "Undo", for `seconds`; then commit(). One pending action per message. */
    function withUndo(li, text, seconds, commit) {
      if (li.querySelector(".chat-pending")) return;
      var bar = document.createElement("div");
      bar.className = "chat-pending";
      bar.setAttribute("role", "status");
      var label = document.createElement("span");
      var undo = document.createElement("button");
      undo.type = "button";
      undo.className = "btn btn-small chat-undo";
      bar.appendChild(label);
      bar.appendChild(undo);
      var left = seconds;
      var timer = null;
      var show = function () {
        label.textContent = text;
        undo.textContent = t("undo_n", { n: left });
      };
      var finish = function () {
        clearInterval(timer);
        li.classList.remove("is-pending");
        if (bar.parentNode) bar.parentNode.removeChild(bar);
      };
      undo.addEventListener("click", function () {
        finish();
        feedback(t("undone"), "ok");
      });
      timer = setInterval(function () {
        left -= 1;
        if (left > 0) {
          show();
          return;
        }
        finish();
        commit();
      }, 1000);
      show();
      li.classList.add("is-pending");
      keepBottom(function () { li.appendChild(bar); });
      undo.focus({ preventScroll: true });
    }

    function addMessage(m) {
      if (!m || m.id == null || messages[m.id]) return; // nothing twice
      var li = messageNode(m);
      messages[m.id] = li;
      append(li);
    }

    function removeMessage(mid) {
      var li = messages[mid];
      if (!li) return;
      delete messages[mid];
      if (li.parentNode) li.parentNode.removeChild(li);
    }

    function replaceChat(history) {
      if (!list) return;
      list.textContent = "";
      messages = {};
      (history || []).forEach(function (m) {
        var li = messageNode(m);
        messages[m.id] = li;
        list.appendChild(li);
      });
      trim();
      toBottom();
    }

    if (list) {
      list.addEventListener("scroll", function () {
        if (pill && !pill.hidden && atBottom()) pill.hidden = true;
      }, { passive: true });
    }
    if (pill) pill.addEventListener("click", toBottom);

    // -- notice, slow mode, the input ----------------------------------------------------------

    /** Change what sits around the list without losing the bottom of the chat (the list may shrink). */
    function keepBottom(change) {
      var stick = atBottom();
      change();
      if (stick) toBottom();
    }

    function setNotice(text) {
      text = text || "";
      keepBottom(function () {
        if (noticeText) noticeText.textContent = text;
        if (noticeBox) noticeBox.hidden = !text;
      });
      if (opts.onNotice) opts.onNotice(text);
    }

    function setSlow(seconds) {
      st.slow = Math.max(0, Number(seconds) || 0);
      if (!st.slow) st.slowUntil = 0;
      keepBottom(render);
      if (opts.onSlowMode) opts.onSlowMode(st.slow);
    }

    function feedback(text, kind) {
      if (!feedbackEl) {
        if (text) systemLine(text, kind);
        return;
      }
      clearTimeout(feedbackTimer);
      keepBottom(function () {
        feedbackEl.textContent = text || "";
        feedbackEl.setAttribute("data-kind", kind || "error");
        feedbackEl.hidden = !text;
      });
      if (text && kind && kind !== "error") {
        feedbackTimer = setTimeout(function () { keepBottom(function () { feedbackEl.hidden = true; }); }, 4000);
      }
    }

    function chatOpen() {
      return st.state === "lobby" || st.state === "live";
    }

    function setText(node, text) {
      if (node && node.textContent !== text) node.textContent = text;
    }

    function render() {
      var now = Date.now();
      var exempt = staffLike(st.you.role);
      var wait = exempt ? 0 : Math.max(0, Math.ceil((st.slowUntil - now) / 1000));
      var mutedFor = Math.max(0, Math.ceil((st.mutedUntil - now) / 60000));
      if (slowLine) {
        var slowText = st.slow && !st.banned ? t("slow_mode_on", { seconds: st.slow }) : "";
        if (slowText && wait > 0) slowText += " · " + t("slow_wait", { seconds: wait });
        setText(slowLine, slowText);
        slowLine.hidden = !slowText;
        slowLine.classList.toggle("is-waiting", wait > 0);
      }
      if (note) {
        var noteText = "";
        if (st.banned) noteText = "";
        else if (!st.everJoined) noteText = t("chat_connecting");
        else if (st.state === "scheduled") noteText = t("chat_opens_lobby");
        else if (!chatOpen()) noteText = t("chat_closed");
        else if (mutedFor > 0) noteText = t("muted_for", { minutes: mutedFor });
        setText(note, noteText);
        note.hidden = !noteText;
      }
      if (!input) return;
      var can = opts.canWrite && st.inRoom && chatOpen() && !st.banned && mutedFor === 0;
      if (input.disabled !== !can) input.disabled = !can;
      var placeholder = can ? t("chat_placeholder") : (chatOpen() || !st.everJoined ? t("chat_not_open") : t("chat_closed"));
      if (st.everJoined && !st.inRoom && !st.banned) placeholder = t("reconnecting");
      if (st.banned) placeholder = t("chat_banned");
      else if (mutedFor > 0) placeholder = t("muted_for", { minutes: mutedFor });
      if (input.placeholder !== placeholder) input.placeholder = placeholder;
      if (sendBtn) {
        var off = !can || st.sending || wait > 0 || !input.value.trim();
        if (sendBtn.disabled !== off) sendBtn.disabled = off;
        setText(sendBtn, wait > 0 ? wait + "s" : t("send"));
      }
      if (counter) {
        var n = input.value.length;
        setText(counter, n + "/" + maxLength);
        counter.classList.toggle("is-near", n >= maxLength * 0.9);
      }
    }

    setInterval(function () {
      if (st.slowUntil > Date.now() - 1500 || st.mutedUntil > Date.now() - 60000) render();
    }, 1000);

    if (input) {
      input.addEventListener("input", function () {
        if (feedbackEl && feedbackEl.getAttribute("data-kind") === "error") feedback("");
        render();
      });
    }

    if (form) {
      form.addEventListener("submit", function (evt) {
        evt.preventDefault();
        if (!input || st.sending) return;
        var text = input.value.trim();
        if (!text) return;
        st.sending = true;
        input.value = ""; // at once; given back if the server refuses it
        render();
        call("chat:send", { broadcast_id: id, text: text }, function (ack) {
          st.sending = false;
          if (ack.ok) {
            feedback("");
            if (st.slow && !staffLike(st.you.role)) st.slowUntil = Date.now() + st.slow * 1000;
          } else {
            var e = ack.error;
            if (!input.value) input.value = text;
            feedback(e.message, "error");
            if (e.code === "banned") banned(e.message);
          }
          render();
        });
      });
    }

    // -- talking to the server ------------------------------------------------------------------

    /** Emit an event and call done({ok, data} | {ok: false, error: {code, message}}) once, always. */
    function call(name, data, done) {
      if (!socket || !socket.connected) {
        done({ ok: false, error: { code: "offline", message: t("offline") } });
        return;
      }
      socket.timeout(10000).emit(name, data, function (err, ack) {
        if (err) {
          done({ ok: false, error: { code: "timeout", message: t("no_answer") } });
        } else if (!ack || typeof ack !== "object") {
          done({ ok: false, error: { code: "unknown", message: t("no_answer") } });
        } else if (!ack.ok) {
          var e = ack.error || {};
          done({ ok: false, error: { code: e.code || "unknown", message: e.message || t("no_answer"), details: e.details } });
        } else {
          done(ack);
        }
      });
    }

    function showBanner(text) {
      if (!banner) return;
      setText(banner, text || "");
      banner.hidden = !text;
    }

    function join() {
      clearTimeout(retryTimer);
      if (!socket || !socket.connected || st.banned) return;
      var seq = ++st.seq;
      var since = st.pos;
      var now = Date.now();
      st.rejoins = st.rejoins.filter(function (at) { return now - at < 10000; });
      if (since && st.rejoins.length >= 5) since = null; // going round in circles: take the whole state
      if (since) st.rejoins.push(now);
      st.joining = true;
      var payload = { broadcast_id: id };
      if (since) payload.since = { epoch: since.epoch, offset: since.offset };
      socket.timeout(10000).emit("join", payload, function (err, ack) {
        if (seq !== st.seq) return; // a later join replaced this one
        st.joining = false;
        if (err || !ack || !ack.ok) {
          var e = err ? { code: "timeout", message: t("no_answer") } : (ack && ack.error) || { code: "unknown", message: t("no_answer") };
          if (e.code === "invalid_position" && since) {
            st.pos = null; // a position this room never gave out: start afresh
            join();
            return;
          }
          st.buffer = [];
          if (e.code === "banned") {
            banned(e.message);
          } else if (e.code === "timeout" || e.code === "internal") {
            retryTimer = setTimeout(join, 3000); // the banner stays: it tries again
          } else {
            showBanner(""); // refused for good: the page says why
          }
          if (opts.onJoinError) opts.onJoinError(e);
          return;
        }
        joined(ack.data || {}, since);
      });
    }

    function joined(data, since) {
      var buffered = st.buffer;
      st.buffer = [];
      if (data.you) st.you = data.you;
      var b = data.broadcast;
      if (b) {
        if (b.state) st.state = b.state;
        if (opts.onSnapshot) opts.onSnapshot(b);
      }
      var pos = data.position;
      if (data.recovered) {
        // Exactly what was missed, in order; then what came live while the answer was on its way.
        if (b) snapshotRoom(b);
        (data.events || []).forEach(function (env) { accept(env); });
        if (pos && st.pos && pos.epoch === st.pos.epoch && pos.offset > st.pos.offset) st.pos = { epoch: pos.epoch, offset: pos.offset };
        buffered.forEach(function (env) { accept(env); });
      } else {
        // The whole state: the chat as the server has it, the notice, slow mode, the spotlight.
        st.pos = pos ? { epoch: pos.epoch, offset: pos.offset } : null;
        if (b) snapshotRoom(b);
        replaceChat(data.chat);
        if (since) {
          var why = data.reason ? t("reason_" + data.reason) : "";
          systemLine(t("not_recovered") + (why && why !== "reason_" + data.reason ? " (" + why + ")" : ""), "warning");
        }
        // What arrived while the answer was on its way happened after that state was read: apply it
        // (a message already shown is not shown twice).
        buffered.forEach(function (env) {
          if (st.pos && env.e === st.pos.epoch && env.o <= st.pos.offset) apply(env);
          else accept(env);
        });
      }
      if (data.counts && opts.onCounts) opts.onCounts(data.counts);
      var first = !st.everJoined;
      st.inRoom = true;
      st.everJoined = true;
      showBanner("");
      keepBottom(render);
      flushHearts();
      if (opts.onJoined) opts.onJoined(data, { first: first, recovered: !!data.recovered });
    }

    function snapshotRoom(b) {
      setNotice(b.pinned_notice || "");
      setSlow(b.slow_mode_seconds || 0);
      if (opts.onSpotlight) opts.onSpotlight(b.spotlight || null);
    }

    /** Take a live envelope in order: drop what was seen, re-join on a gap. */
    function accept(env) {
      if (!env || typeof env.o !== "number") return;
      if (st.joining || !st.pos) {
        st.buffer.push(env);
        return;
      }
      if (env.e === st.pos.epoch && env.o <= st.pos.offset) return; // seen already
      if (env.e !== st.pos.epoch || env.o !== st.pos.offset + 1) {
        st.buffer.push(env); // a gap, or the room's stream started over: ask for what is missing
        join();
        return;
      }
      st.pos = { epoch: env.e, offset: env.o };
      apply(env);
    }

    function apply(env) {
      var d = env.d || {};
      switch (env.t) {
        case "chat":
          addMessage(d);
          break;
        case "chat:deleted":
          removeMessage(d.id);
          break;
        case "notice":
          setNotice(d.text || "");
          break;
        case "slow_mode":
          setSlow(d.seconds || 0);
          break;
        case "spotlight":
          if (opts.onSpotlight) opts.onSpotlight(d.item || null);
          break;
        default:
          if (opts.onEvent) opts.onEvent(env);
      }
    }

    function banned(message) {
      if (st.banned) return;
      st.banned = true;
      st.inRoom = false;
      showBanner("");
      feedback(message || t("chat_banned"), "error");
      if (socket && socket.connected) socket.emit("leave", { broadcast_id: id });
      LC.setStatus(opts.statusEl, "error", t("not_in_room"));
      render();
      if (opts.onBanned) opts.onBanned(message);
    }

    // -- hearts ------------------------------------------------------------------------------

    var hearts = { pending: 0, last: 0, timer: null };

    function flushHearts() {
      hearts.timer = null;
      if (!hearts.pending) return;
      if (!socket || !socket.connected || !st.inRoom) {
        hearts.pending = Math.min(hearts.pending, HEART_MAX); // sent once back in the room
        return;
      }
      var wait = hearts.last + HEART_EVERY_MS - Date.now();
      if (wait > 0) {
        hearts.timer = setTimeout(flushHearts, wait);
        return;
      }
      var n = Math.min(HEART_MAX, hearts.pending);
      hearts.pending -= n;
      hearts.last = Date.now();
      socket.emit("heart", { broadcast_id: id, count: n });
      if (hearts.pending) hearts.timer = setTimeout(flushHearts, HEART_EVERY_MS);
    }

    function heart() {
      hearts.pending += 1;
      if (!hearts.timer) flushHearts();
    }

    // -- the socket -----------------------------------------------------------------------------

    socket = LC.liveSocket({
      broadcastId: id,
      statusEl: opts.statusEl,
      onConnect: function () {
        if (st.banned) {
          LC.setStatus(opts.statusEl, "error", t("not_in_room"));
          return;
        }
        join();
      },
      onStatus: function (status) {
        st.status = status;
        if (status === "reconnecting" || status === "failed") {
          st.inRoom = false;
          st.joining = false;
          st.seq += 1; // an answer to a join sent before the drop is of no use
          st.buffer = [];
          if (st.everJoined && !st.banned) showBanner(status === "failed" ? t("connect_failed") : t("reconnecting"));
          render();
        }
      },
      onState: function (evt) {
        st.state = evt.state;
        render();
        if (opts.onState) opts.onState(evt);
      },
      onEnding: opts.onEnding
    });

    if (socket) {
      socket.on("room", function (env) { accept(env); });
      socket.on("room:batch", function (envs) {
        (envs || []).forEach(function (env) { accept(env); });
      });
      socket.on("counts", function (c) {
        if (c && c.broadcast_id === id && opts.onCounts) opts.onCounts(c);
      });
      socket.on("you:muted", function (evt) {
        if (!evt || evt.broadcast_id !== id) return;
        var until = Date.parse(evt.until);
        // the server's time, on this device's clock
        st.mutedUntil = isNaN(until) ? Date.now() + 10 * 60000 : until - (LC.now() - Date.now());
        var minutes = Math.max(1, Math.ceil((st.mutedUntil - Date.now()) / 60000));
        feedback(t("you_muted", { minutes: minutes }), "error");
        render();
      });
      socket.on("you:banned", function (evt) {
        if (evt && evt.broadcast_id === id) banned(t("you_banned"));
      });
    }
    render();

    return {
      socket: socket,
      call: call,
      heart: heart,
      feedback: feedback,
      systemLine: systemLine,
      message: function (mid) { return messages[mid] || null; },
      askReason: askReason,
      withUndo: withUndo,
      you: function () { return st.you; },
      position: function () { return st.pos; },
      on: function (name, fn) { if (socket) socket.on(name, fn); },
      setState: function (state) {
        st.state = state;
        render();
      }
    };
  }

  LC.room = room;
  LC.chatMessage = chatMessage;
})();
