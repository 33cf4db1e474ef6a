/* A winner's delivery details (viewer/won.html): the form is sent as JSON to
 * /api/v1/giveaways/{id}/winner-details with the session's CSRF token in X-CSRF-Token; then a thank-you.
 * Sending it again replaces the details, so a retry after a dropped connection is harmless. */
(function () {
  "use strict";

  var LC = window.LC || {};
  var $ = function (id) { return document.getElementById(id); };
  var form = $("won-form");
  if (!form) return;
  var strings = (LC.readJson && LC.readJson("won-i18n")) || {};
  var t = function (key) { return Object.prototype.hasOwnProperty.call(strings, key) ? String(strings[key]) : key; };
  var errorBox = $("won-error");
  var send = $("won-send");
  var label = send.textContent;
  var busy = false;

  function value(id) { var el = $(id); return el ? el.value.trim() : ""; }

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  form.addEventListener("submit", function (evt) {
    evt.preventDefault();
    if (busy) return;
    var body = { name: value("won-name"), phone: value("won-phone"), postal_code: value("won-postal"),
                 address1: value("won-address1"), address2: value("won-address2") };
    if (!body.name || body.phone.replace(/\D/g, "").length < 9 || !/^\d{5}$/.test(body.postal_code) || !body.address1) {
      showError(t("fill"));
      return;
    }
    busy = true;
    send.disabled = true;
    send.textContent = t("sending");
    showError("");
    fetch("/api/v1/giveaways/" + encodeURIComponent(form.getAttribute("data-giveaway")) + "/winner-details", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/json",
                 "X-CSRF-Token": form.getAttribute("data-csrf") || "" },
      body: JSON.stringify(body)
    }).then(function (resp) {
      return resp.json().then(function (data) { return { ok: resp.ok, data: data }; },
                              function () { return { ok: resp.ok, data: null }; });
    }).then(function (r) {
      if (r.ok) {
        form.hidden = true;
        var before = $("won-saved-before");
        if (before) before.hidden = true;
        $("won-done-address").textContent = body.name + " · " + body.phone + " · (" + body.postal_code + ") " +
          body.address1 + (body.address2 ? " " + body.address2 : "");
        var done = $("won-done");
        done.hidden = false;
        done.focus();
      } else {
        showError((r.data && r.data.error && r.data.error.message) || t("network"));
      }
    }, function () {
      showError(t("network"));
    }).then(function () {
      busy = false;
      send.disabled = false;
      send.textContent = label;
    });
  });
})();
