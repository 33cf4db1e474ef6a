/* The staff's coupons page (staff/coupons.html): the coupon form (create, or edit a coupon from the
 * list: its terms fill the form), with the fields that only some coupons have shown as needed (the cap
 * for a percentage, the stall or the products for what it covers, in the chosen market); planning a
 * drop (the coupons offered are those of the broadcast's market) and cancelling a planned one. Each is
 * sent as JSON to the coupons API with the session's CSRF token; the page then reloads and says what
 * was done. */
(function () {
  "use strict";

  var LC = window.LC || {};
  var $ = function (id) { return document.getElementById(id); };
  var strings = (LC.readJson && LC.readJson("coupons-staff-i18n")) || {};
  var t = function (key) { return Object.prototype.hasOwnProperty.call(strings, key) ? String(strings[key]) : key; };
  var FLASH = "livecommerce:coupons-notice";

  function each(selector, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn);
  }

  function send(method, url, body, csrf) {
    var headers = { "Accept": "application/json", "X-CSRF-Token": csrf || "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, { method: method, credentials: "same-origin", headers: headers,
                        body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (resp) {
        if (resp.status === 204) return { ok: true, data: null };
        return resp.json().then(function (data) { return { ok: resp.ok, data: data }; },
                                function () { return { ok: resp.ok, data: null }; });
      });
  }

  function errorText(r) {
    var e = r && r.data && r.data.error;
    return (e && e.message) || t("network");
  }

  function showError(box, text) {
    if (!box) return;
    box.textContent = text || "";
    box.hidden = !text;
    if (text) box.scrollIntoView({ block: "nearest" });
  }

  function done(key, hash) {
    try { window.sessionStorage.setItem(FLASH, key); } catch (e) { /* the reload still shows the change */ }
    window.location.assign(window.location.pathname + window.location.search + (hash || ""));
    window.location.reload();
  }

  // What the last change did, shown once after the reload.
  (function () {
    var key = null;
    try {
      key = window.sessionStorage.getItem(FLASH);
      window.sessionStorage.removeItem(FLASH);
    } catch (e) { key = null; }
    var box = $("coupons-notice");
    if (key && box) {
      box.textContent = t(key);
      box.hidden = false;
    }
  })();

  function intOrNull(v) {
    var n = parseInt(String(v || "").trim(), 10);
    return isNaN(n) ? null : n;
  }

  // -- the coupon form -------------------------------------------------------------------------------

  var form = $("template-form");
  if (form) {
    var csrf = form.getAttribute("data-csrf");
    var market = $("tpl-market");
    var merchant = $("tpl-merchant");
    var errorBox = $("template-error");
    var save = $("template-save");
    var cancel = $("template-cancel");
    var title = $("template-form-title");

    var checked = function (name) {
      var el = form.querySelector("input[name=" + name + "]:checked");
      return el ? el.value : "";
    };

    var sync = function () {
      var kind = checked("kind");
      var scope = checked("scope");
      each("[data-kind-only]", function (el) { el.hidden = el.getAttribute("data-kind-only") !== kind; });
      each("[data-kind-label]", function (el) { el.hidden = el.getAttribute("data-kind-label") !== kind; });
      each("[data-scope-only]", function (el) { el.hidden = el.getAttribute("data-scope-only") !== scope; });
      var mk = market ? market.value : "";
      var firstOk = null;
      if (merchant) {
        each("option", function (o) {
          var ok = !mk || o.getAttribute("data-market") === mk;
          o.hidden = !ok;
          o.disabled = !ok;
          if (ok && !firstOk) firstOk = o;
        }, merchant);
        var current = merchant.options[merchant.selectedIndex];
        if ((!current || current.disabled) && firstOk) merchant.value = firstOk.value;
      }
      each(".tpl-products .choice", function (label) {
        var ok = !mk || label.getAttribute("data-market") === mk;
        label.hidden = !ok;
        if (!ok) label.querySelector("input").checked = false;
      });
      var value = $("tpl-value");
      if (value) value.max = kind === "percent" ? "100" : "10000000";
    };
    form.addEventListener("change", sync);
    sync();

    var editing = function (tpl) {
      $("tpl-id").value = tpl ? String(tpl.id) : "";
      title.textContent = title.getAttribute(tpl ? "data-edit" : "data-new") + (tpl ? ": " + tpl.name_ko : "");
      save.textContent = save.getAttribute(tpl ? "data-edit" : "data-new");
      cancel.hidden = !tpl;
      market.disabled = !!tpl;
      $("tpl-market-hint").hidden = !tpl;
      showError(errorBox, "");
    };

    var fill = function (tpl) {
      market.value = String(tpl.market_id);
      $("tpl-name-ko").value = tpl.name_ko || "";
      $("tpl-name-en").value = tpl.name_en || "";
      each("input[name=kind]", function (r) { r.checked = r.value === tpl.kind; }, form);
      $("tpl-value").value = tpl.value;
      $("tpl-max").value = tpl.max_discount == null ? "" : tpl.max_discount;
      $("tpl-min").value = tpl.min_order || 0;
      each("input[name=scope]", function (r) { r.checked = r.value === tpl.scope; }, form);
      sync();
      if (tpl.merchant_id != null) merchant.value = String(tpl.merchant_id);
      var ids = (tpl.product_ids || []).map(String);
      each("input[name=product_ids]", function (c) { c.checked = ids.indexOf(c.value) !== -1; }, form);
      $("tpl-quantity").value = tpl.quantity;
      $("tpl-limit").value = tpl.per_viewer_limit;
      $("tpl-claim").value = tpl.claim_minutes;
      $("tpl-days").value = tpl.use_days == null ? "" : tpl.use_days;
      $("tpl-combinable").checked = !!tpl.combinable;
      editing(tpl);
    };

    each("[data-edit-template]", function (btn) {
      btn.addEventListener("click", function () {
        var tpl = null;
        try { tpl = JSON.parse(btn.getAttribute("data-edit-template")); } catch (e) { tpl = null; }
        if (!tpl) return;
        fill(tpl);
        $("template-section").scrollIntoView({ behavior: "smooth", block: "start" });
        $("tpl-name-ko").focus({ preventScroll: true });
      });
    });

    cancel.addEventListener("click", function () {
      form.reset();
      editing(null);
      sync();
    });

    form.addEventListener("submit", function (evt) {
      evt.preventDefault();
      var kind = checked("kind");
      var scope = checked("scope");
      var body = {
        name_ko: $("tpl-name-ko").value.trim(),
        name_en: $("tpl-name-en").value.trim(),
        kind: kind,
        value: intOrNull($("tpl-value").value),
        max_discount: kind === "percent" ? intOrNull($("tpl-max").value) : null,
        min_order: intOrNull($("tpl-min").value) || 0,
        scope: scope,
        merchant_id: scope === "merchant" ? intOrNull(merchant.value) : null,
        product_ids: [],
        combinable: $("tpl-combinable").checked,
        per_viewer_limit: intOrNull($("tpl-limit").value),
        quantity: intOrNull($("tpl-quantity").value),
        claim_minutes: intOrNull($("tpl-claim").value),
        use_days: intOrNull($("tpl-days").value)
      };
      if (scope === "products") {
        each("input[name=product_ids]:checked", function (c) { body.product_ids.push(Number(c.value)); }, form);
      }
      var id = $("tpl-id").value;
      var url = id ? "/api/v1/coupon-templates/" + encodeURIComponent(id)
        : "/api/v1/markets/" + encodeURIComponent(market.value) + "/coupon-templates";
      save.disabled = true;
      showError(errorBox, "");
      send(id ? "PUT" : "POST", url, body, csrf).then(function (r) {
        if (r.ok) {
          done(id ? "saved" : "created", "#templates");
          return;
        }
        save.disabled = false;
        showError(errorBox, errorText(r));
      }, function () {
        save.disabled = false;
        showError(errorBox, t("network"));
      });
    });
  }

  // -- planning a drop ------------------------------------------------------------------------------------

  var plan = $("plan-form");
  if (plan) {
    var planCsrf = plan.getAttribute("data-csrf");
    var broadcast = $("plan-broadcast");
    var template = $("plan-template");
    var planError = $("plan-error");
    var planSync = function () {
      var opt = broadcast.options[broadcast.selectedIndex];
      var mk = opt ? opt.getAttribute("data-market") : "";
      var first = null;
      each("option", function (o) {
        var ok = o.getAttribute("data-market") === mk;
        o.hidden = !ok;
        o.disabled = !ok;
        if (ok && !first) first = o;
      }, template);
      var current = template.options[template.selectedIndex];
      if ((!current || current.disabled) && first) template.value = first.value;
      $("plan-template-none").hidden = !!first;
      plan.querySelector("button[type=submit]").disabled = !first;
    };
    broadcast.addEventListener("change", planSync);
    planSync();

    plan.addEventListener("submit", function (evt) {
      evt.preventDefault();
      var btn = plan.querySelector("button[type=submit]");
      var body = { template_id: intOrNull(template.value), minute: intOrNull($("plan-minute").value) };
      var q = intOrNull($("plan-quantity").value);
      if (q !== null) body.quantity = q;
      btn.disabled = true;
      showError(planError, "");
      send("POST", "/api/v1/broadcasts/" + encodeURIComponent(broadcast.value) + "/planned-drops", body, planCsrf)
        .then(function (r) {
          if (r.ok) {
            done("planned", "#plan-section");
            return;
          }
          btn.disabled = false;
          showError(planError, errorText(r));
        }, function () {
          btn.disabled = false;
          showError(planError, t("network"));
        });
    });
  }

  each("[data-cancel-drop]", function (btn) {
    btn.addEventListener("click", function () {
      var question = btn.getAttribute("data-confirm");
      if (question && !window.confirm(question)) return;
      btn.disabled = true;
      var csrf = (plan && plan.getAttribute("data-csrf")) || (form && form.getAttribute("data-csrf")) || "";
      send("DELETE", "/api/v1/planned-drops/" + encodeURIComponent(btn.getAttribute("data-cancel-drop")), undefined, csrf)
        .then(function (r) {
          if (r.ok) {
            done("cancelled", "#plan-section");
            return;
          }
          btn.disabled = false;
          window.alert(errorText(r));
        }, function () {
          btn.disabled = false;
          window.alert(t("network"));
        });
    });
  });
})();
