/* The postcode finder (viewer/_postcode.html): each `[data-postcode]` beside a postal code field gets a
 * "find postcode" button that opens a panel in the page. Enter (or Search) asks /api/v1/addresses; each
 * address found is a button (postal code, road address, and the lot-number address smaller); picking one
 * fills the postal code and the address, tells the page with an `input` and a `change` event on each (the
 * buy sheet's delivery quote listens to the postal code), closes the panel and moves the focus to the detail
 * field. Escape closes the panel (and only the panel: a sheet around it stays open).
 *
 * A query with fewer than 2 letters, digits or Hangul syllables is not sent (the server would refuse it with
 * the same words); the server's own refusal (too many searches) is shown as it says it. */
(function () {
  "use strict";

  var SEARCHABLE = /[0-9A-Za-z\uac00-\ud7a3]/g;
  var QUERY_MIN = 2;

  function fill(text, n) { return String(text || "").split("{n}").join(String(n)); }

  function setup(root) {
    var $ = function (id) { return document.getElementById(id); };
    var postal = $(root.getAttribute("data-postal"));
    var address = $(root.getAttribute("data-address"));
    var detail = $(root.getAttribute("data-detail"));
    var opener = root.querySelector(".postcode-open");
    var panel = root.querySelector(".postcode-panel");
    var field = root.querySelector(".postcode-q");
    var go = root.querySelector(".postcode-go");
    var status = root.querySelector(".postcode-status");
    var list = root.querySelector(".postcode-results");
    var closer = root.querySelector(".postcode-close");
    if (!postal || !opener || !panel || !field || !list) return;
    var hint = status.textContent;
    var text = function (name) { return root.getAttribute("data-" + name) || ""; };
    var seq = 0;

    function say(message, error) {
      status.textContent = message;
      status.classList.toggle("is-error", !!error);
    }

    function open() {
      panel.hidden = false;
      opener.setAttribute("aria-expanded", "true");
      panel.scrollIntoView({ block: "nearest" });
      field.focus();
    }

    function close(focusOpener) {
      if (panel.hidden) return;
      panel.hidden = true;
      opener.setAttribute("aria-expanded", "false");
      seq++; // an answer still on its way is not shown
      if (focusOpener) opener.focus();
    }

    function tell(el, value) {
      if (!el) return;
      el.value = value;
      el.dispatchEvent(new Event("input", { bubbles: true }));
      el.dispatchEvent(new Event("change", { bubbles: true }));
    }

    function pick(a) {
      tell(postal, a.postal_code);
      tell(address, a.road_address);
      close(false);
      var next = detail || address || postal;
      next.focus();
      if (next.select && next.value) next.select();
    }

    function row(a) {
      var li = document.createElement("li");
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "postcode-result";
      var code = document.createElement("span");
      code.className = "postcode-code";
      code.textContent = a.postal_code;
      var road = document.createElement("span");
      road.className = "postcode-road";
      road.textContent = a.road_address + (a.building_name ? " (" + a.building_name + ")" : "");
      btn.appendChild(code);
      btn.appendChild(road);
      if (a.jibun_address) {
        var jibun = document.createElement("span");
        jibun.className = "postcode-jibun";
        jibun.textContent = text("jibun") + " " + a.jibun_address;
        btn.appendChild(jibun);
      }
      btn.addEventListener("click", function () { pick(a); });
      li.appendChild(btn);
      return li;
    }

    function show(data) {
      list.textContent = "";
      var results = (data && data.results) || [];
      results.forEach(function (a) { list.appendChild(row(a)); });
      list.hidden = !results.length;
      if (!results.length) say(text("none"), false);
      else if (data.truncated) say(fill(text("more"), results.length), false);
      else say(fill(text("found"), results.length), false);
    }

    function search() {
      var q = field.value.trim();
      if ((q.match(SEARCHABLE) || []).length < QUERY_MIN) {
        list.hidden = true;
        list.textContent = "";
        say(text("short"), true);
        return;
      }
      var mine = ++seq;
      say(text("searching"), false);
      fetch("/api/v1/addresses?q=" + encodeURIComponent(q), {
        credentials: "same-origin", headers: { "Accept": "application/json" }
      }).then(function (resp) {
        return resp.json().then(function (data) { return { ok: resp.ok, data: data }; },
                                function () { return { ok: false, data: null }; });
      }).then(function (r) {
        if (mine !== seq) return; // a later search, or the panel closed
        if (r.ok) {
          show(r.data);
        } else {
          list.hidden = true;
          say((r.data && r.data.error && r.data.error.message) || text("failed"), true);
        }
      }, function () {
        if (mine !== seq) return;
        say(text("failed"), true);
      });
    }

    opener.addEventListener("click", function () {
      if (panel.hidden) open();
      else close(true);
    });
    if (closer) closer.addEventListener("click", function () { close(true); });
    if (go) go.addEventListener("click", search);
    field.addEventListener("keydown", function (evt) {
      if (evt.key !== "Enter") return;
      evt.preventDefault(); // the search, not the form around it
      if (!evt.isComposing) {
        search();
        return;
      }
      // the Enter that ends a Hangul syllable: search once the syllable is in the field
      var done = false;
      var once = function () { if (!done) { done = true; search(); } };
      field.addEventListener("compositionend", function () { setTimeout(once, 0); }, { once: true });
      setTimeout(once, 300);
    });
    // A keyboard that submits the form without a keydown for its Enter key: the search, not the order.
    document.addEventListener("submit", function (evt) {
      if (document.activeElement !== field || !evt.target.contains(field)) return;
      evt.preventDefault();
      evt.stopPropagation();
      search();
    }, true);
    field.addEventListener("input", function () {
      if (!field.value.trim()) say(hint, false);
    });
    panel.addEventListener("keydown", function (evt) {
      if (evt.key !== "Escape") return;
      evt.stopPropagation(); // the panel closes, a sheet around it stays
      close(true);
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-postcode]"), setup);
})();
