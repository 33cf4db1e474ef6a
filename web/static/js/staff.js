/* livecommerce: the staff's schedule pages (no inline script: CSP is script-src 'self').
 *
 * - Forms with `data-confirm` ask before they are sent (skip a show, cancel a broadcast).
 * - `select[data-autosubmit]` sends its form when changed; `[data-js-hide]` is for browsers without JS.
 * - Series form: the weekday boxes are marked as unused while the advanced RRULE field is filled.
 * - Line-up form: a row dims when it is not in the line-up; ticking a row gives it the next running
 *   order number, and typing in an unticked row ticks it.
 * - Schedule page: states change live (socket.io `schedule:watch`), when the socket client is loaded.
 */
(function () {
  "use strict";

  var LC = window.LC || {};

  function each(selector, fn, root) {
    var nodes = (root || document).querySelectorAll(selector);
    for (var i = 0; i < nodes.length; i++) fn(nodes[i]);
  }

  function t(key, fallback) {
    return typeof LC.t === "function" ? LC.t(key) : fallback;
  }

  // -- confirmations ----------------------------------------------------------------------
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form || !form.getAttribute) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      evt.preventDefault();
      return;
    }
    // One click, one request: a slow answer must not lead to a second submission.
    each("button[type=submit]", function (btn) {
      window.setTimeout(function () {
        btn.disabled = true;
      }, 0);
    }, form);
  });

  // Back to a page from the history cache: its buttons work again.
  window.addEventListener("pageshow", function (evt) {
    if (evt.persisted) {
      each("button[type=submit]", function (btn) {
        btn.disabled = false;
      });
    }
  });

  // -- auto-submitting selects ------------------------------------------------------------
  each("select[data-autosubmit]", function (sel) {
    sel.addEventListener("change", function () {
      if (sel.form) sel.form.submit();
    });
  });
  each("[data-js-hide]", function (el) {
    el.hidden = true;
  });

  // -- series form: days or a raw RRULE ---------------------------------------------------
  var rrule = document.getElementById("rrule");
  var days = document.getElementById("weekdays-field");
  var ignored = document.getElementById("weekdays-ignored");
  if (rrule && days) {
    var syncRule = function () {
      var used = rrule.value.trim() !== "";
      days.classList.toggle("is-ignored", used);
      if (ignored) ignored.hidden = !used;
    };
    rrule.addEventListener("input", syncRule);
    syncRule();
  }

  // -- line-up form -----------------------------------------------------------------------
  var rows = document.querySelectorAll("[data-lineup-row]");
  function nextOrder() {
    var max = 0;
    for (var i = 0; i < rows.length; i++) {
      var box = rows[i].querySelector("[data-include]");
      var order = rows[i].querySelector("[data-order]");
      if (box && box.checked && order) {
        var n = parseInt(order.value, 10);
        if (!isNaN(n) && n > max) max = n;
      }
    }
    return max + 1;
  }
  each("[data-lineup-row]", function (row) {
    var box = row.querySelector("[data-include]");
    var order = row.querySelector("[data-order]");
    if (!box) return;
    var sync = function () {
      row.classList.toggle("is-off", !box.checked);
    };
    box.addEventListener("change", function () {
      if (box.checked && order && order.value.trim() === "") {
        box.checked = false; // not counted while looking for the highest number
        order.value = String(nextOrder());
        box.checked = true;
      }
      sync();
    });
    each("input[type=number]", function (input) {
      input.addEventListener("input", function () {
        if (!box.checked) {
          box.checked = true;
          if (order && order.value.trim() === "" && input !== order) {
            box.checked = false;
            order.value = String(nextOrder());
            box.checked = true;
          }
          sync();
        }
      });
    }, row);
    sync();
  });

  // -- the schedule, live -----------------------------------------------------------------
  var live = document.querySelector("[data-schedule-live]");
  if (live && typeof window.io === "function") {
    var socket = window.io("/live", { transports: ["websocket"], withCredentials: true });
    socket.on("connect", function () {
      socket.emit("schedule:watch", null);
    });
    socket.on("schedule:state", function (evt) {
      if (!evt || !evt.broadcast_id || !evt.state) return;
      var label = t("state_" + evt.state, evt.state);
      each('[data-broadcast="' + Number(evt.broadcast_id) + '"]', function (el) {
        if (el.classList.contains("chip")) {
          el.setAttribute("data-state", evt.state);
          var text = el.querySelector(".chip-state");
          if (text) text.textContent = label;
        }
        each(".state-badge", function (badge) {
          if (typeof LC.setBadge === "function") LC.setBadge(badge, evt.state);
        }, el);
      });
    });
  }
})();
