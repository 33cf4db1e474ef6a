/* The buy sheet (viewer/_buy.html): quantity steppers, a running total with the live discount, the
 * delivery promise quoted by the server as the postal code is typed, the viewer's coupons for this
 * broadcast (none, one of them, or the best one picked by the server) with the discount estimated
 * here (coupons.js), and the order sent with an Idempotency-Key.
 *
 * The key is made once when the sheet opens and kept for every retry of the same order, so a
 * confirm pressed twice or resent after a dropped connection buys once. Once the server has given a
 * definitive answer (an order, or a refusal such as "sold out"), the next confirm is a new order and
 * gets a new key.
 *
 * For the live room: LC.buySheet.setStock({productId: left, ...}) updates the units left (e.g. from
 * a socket push); LC.buySheet.refresh() reloads them from the server; LC.buySheet.refreshCoupons()
 * reloads the viewer's coupons (after a claim).
 *
 * Without a sign-in the sheet only invites to join: there is no form, and nothing is loaded.
 */
(function () {
  "use strict";

  var root = document.getElementById("buy-sheet");
  if (!root) return;
  var LC = (window.LC = window.LC || {});
  var $ = function (id) { return document.getElementById(id); };
  var strings = {};
  try { strings = JSON.parse(($("buy-i18n") || {}).textContent || "{}"); } catch (e) { strings = {}; }

  function t(key, params) {
    var text = Object.prototype.hasOwnProperty.call(strings, key) ? String(strings[key]) : key;
    Object.keys(params || {}).forEach(function (name) {
      text = text.split("{" + name + "}").join(String(params[name]));
    });
    return text;
  }

  function won(amount) {
    var n = Math.round(Number(amount) || 0).toLocaleString("en-US");
    return strings.locale === "en" ? "₩" + n : n + "원";
  }

  var broadcastId = Number(root.getAttribute("data-broadcast"));
  var details = $("buy-details");
  var form = $("buy-form");
  var confirmBtn = $("buy-confirm");
  var errorBox = $("buy-error");
  var done = $("buy-done");
  var deliveryBox = $("buy-delivery");
  var methodsBox = $("buy-methods");
  var postal = $("buy-postal");
  var items = Array.prototype.slice.call(root.querySelectorAll(".buy-item"));
  var couponsField = $("buy-coupons-field");
  var couponsBox = $("buy-coupons");
  var couponNote = $("buy-coupon-note");
  var state = { open: root.getAttribute("data-state") === "live", left: {}, fee: 0, key: null, busy: false,
                max: 10, methods: [], unanswered: false,
                coupons: [] /* the viewer's usable coupons here: {id: claim id, ...the drop's terms} */,
                couponChoice: "best" /* "none", "best" or a claim id */, couponSeq: 0,
                quoted: null /* {postal, option}: the promise shown, which the order confirms */ };

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  function showError(text) {
    if (!errorBox) return;
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
    if (text) errorBox.scrollIntoView({ block: "nearest" });
  }

  function qtyInput(pid) { return $("buy-qty-" + pid); }

  function quantity(pid) {
    var out = qtyInput(pid);
    var n = out ? parseInt(out.textContent, 10) : 0;
    return isNaN(n) || n < 0 ? 0 : n;
  }

  function limit(pid) {
    var left = Object.prototype.hasOwnProperty.call(state.left, pid) ? state.left[pid] : state.max;
    return Math.max(0, Math.min(state.max, left));
  }

  function setQuantity(pid, n) {
    var out = qtyInput(pid);
    if (!out) return;
    out.textContent = String(Math.max(0, Math.min(limit(pid), n)));
    render();
  }

  /** The cart as the coupon maths reads it: the lines chosen, at the live prices. */
  function cartLines() {
    var lines = [];
    items.forEach(function (li) {
      var pid = li.getAttribute("data-product");
      var q = Math.min(quantity(pid), limit(pid));
      if (q > 0) {
        lines.push({ product_id: Number(pid), merchant_id: Number(li.getAttribute("data-merchant")),
                     line_total: q * Number(li.getAttribute("data-price")) });
      }
    });
    return lines;
  }

  function chosenCoupon() {
    for (var i = 0; i < state.coupons.length; i++) {
      if (String(state.coupons[i].id) === state.couponChoice) return state.coupons[i];
    }
    return null;
  }

  function whyNot(r) {
    if (r.reason === "below_minimum") return t("coupon_below", { amount: won(r.missing) });
    if (r.reason === "out_of_scope") return t("coupon_out");
    return t("coupon_empty");
  }

  /** The coupon discount estimated for the cart as it is now (the server works out the exact one). */
  function estimate(lines) {
    var C = LC.coupons;
    if (!C || !state.coupons.length || state.couponChoice === "none") return { off: 0, note: "" };
    if (state.couponChoice === "best") {
      var best = C.best(state.coupons, lines);
      if (!best) return { off: 0, note: lines.length ? t("coupon_best_none") : "" };
      return { off: best.off, note: t("coupon_best_is", { name: couponName(best.coupon), amount: won(best.off) }) };
    }
    var c = chosenCoupon();
    if (!c) return { off: 0, note: "" };
    var r = C.discount(c, lines);
    if (!r.ok) return { off: 0, note: lines.length ? t("coupon_not_applying", { why: whyNot(r) }) : "" };
    return { off: r.off, note: "" };
  }

  function couponName(c) {
    var name = strings.locale === "en" ? c.name_en || c.name_ko : c.name_ko || c.name_en;
    return name || (LC.coupons ? LC.coupons.label(c) : "");
  }

  function renderCouponChoices() {
    if (!couponsBox || !couponsField) return;
    couponsBox.textContent = "";
    couponsField.hidden = !state.coupons.length;
    if (!state.coupons.length) return;
    var ids = state.coupons.map(function (c) { return String(c.id); });
    if (state.couponChoice !== "none" && state.couponChoice !== "best" && ids.indexOf(state.couponChoice) === -1) {
      state.couponChoice = "best"; // the coupon chosen is gone (used, or expired)
    }
    var choices = [{ value: "best", text: t("coupon_best") }];
    state.coupons.forEach(function (c) {
      var terms = LC.coupons ? [LC.coupons.label(c), LC.coupons.minimum(c), LC.coupons.scope(c)].filter(Boolean)
        .join(" · ") : "";
      choices.push({ value: String(c.id), text: couponName(c), sub: terms, coupon: c });
    });
    choices.push({ value: "none", text: t("coupon_none") });
    choices.forEach(function (ch) {
      var label = document.createElement("label");
      label.className = "choice coupon-choice";
      var input = document.createElement("input");
      input.type = "radio";
      input.name = "coupon_choice";
      input.value = ch.value;
      input.checked = ch.value === state.couponChoice;
      label.appendChild(input);
      var body = document.createElement("span");
      body.className = "coupon-choice-body";
      var main = document.createElement("span");
      main.className = "coupon-choice-name";
      main.textContent = ch.text;
      body.appendChild(main);
      if (ch.sub) {
        var sub = document.createElement("span");
        sub.className = "coupon-choice-sub";
        sub.textContent = ch.sub;
        body.appendChild(sub);
      }
      label.appendChild(body);
      if (ch.coupon) {
        var est = document.createElement("span");
        est.className = "coupon-choice-off";
        est.setAttribute("data-coupon", ch.value);
        label.appendChild(est);
      }
      couponsBox.appendChild(label);
    });
  }

  function renderCouponEstimates(lines) {
    if (!couponsBox || !LC.coupons) return;
    Array.prototype.forEach.call(couponsBox.querySelectorAll("[data-coupon]"), function (span) {
      var c = null;
      state.coupons.forEach(function (x) { if (String(x.id) === span.getAttribute("data-coupon")) c = x; });
      if (!c) return;
      var r = LC.coupons.discount(c, lines);
      span.textContent = r.ok ? t("coupon_off", { amount: won(r.off) }) : lines.length ? whyNot(r) : "";
      span.classList.toggle("is-off", !r.ok);
    });
  }

  function loadCoupons() {
    if (!form || !couponsBox) return;
    var seq = ++state.couponSeq;
    request("GET", "/api/v1/me/coupons?broadcast_id=" + broadcastId).then(function (r) {
      if (seq !== state.couponSeq || r.status !== 200 || !Array.isArray(r.data)) return;
      state.coupons = r.data.filter(function (h) { return h && h.drop && h.state === "claimed"; }).map(function (h) {
        var d = h.drop;
        return { id: h.claim_id, kind: d.kind, value: d.value, max_discount: d.max_discount, min_order: d.min_order,
                 scope: d.scope, merchant_id: d.merchant_id, product_ids: d.product_ids || [], name_ko: d.name_ko,
                 name_en: d.name_en, combinable: d.combinable };
      });
      renderCouponChoices();
      render();
    }).catch(function () { /* the order can still be placed without a coupon */ });
  }

  function render() {
    if (!form) return;
    var usual = 0, subtotal = 0, count = 0;
    items.forEach(function (li) {
      var pid = li.getAttribute("data-product");
      var left = limit(pid);
      var q = Math.min(quantity(pid), left);
      var out = qtyInput(pid);
      if (out && String(q) !== out.textContent) out.textContent = String(q);
      var leftEl = $("buy-left-" + pid);
      if (leftEl && Object.prototype.hasOwnProperty.call(state.left, pid)) {
        leftEl.textContent = state.left[pid] > 0 ? t("left", { n: state.left[pid] }) : t("sold_out");
      }
      li.classList.toggle("is-inactive", left === 0);
      li.querySelectorAll("[data-step]").forEach(function (btn) {
        var step = Number(btn.getAttribute("data-step"));
        btn.disabled = step > 0 ? q >= left : q <= 0;
      });
      usual += q * Number(li.getAttribute("data-usual"));
      subtotal += q * Number(li.getAttribute("data-price"));
      count += q;
    });
    var fee = count > 0 ? state.fee : 0;
    var lines = cartLines();
    var est = estimate(lines);
    renderCouponEstimates(lines);
    if (couponNote) couponNote.textContent = state.coupons.length ? [est.note, t("coupon_note")].filter(Boolean).join(" ") : "";
    var couponRow = $("buy-coupon-row");
    if (couponRow) couponRow.hidden = !(est.off > 0);
    if ($("buy-coupon")) $("buy-coupon").textContent = "−" + won(est.off);
    var total = Math.max(0, subtotal - est.off) + fee;
    $("buy-usual").textContent = won(usual);
    $("buy-savings").textContent = usual > subtotal ? "−" + won(usual - subtotal) : won(0);
    $("buy-fee").textContent = fee > 0 ? won(fee) : t("fee_free");
    $("buy-total").textContent = won(total);
    if (confirmBtn) {
      confirmBtn.textContent = state.busy ? t("sending") : t("confirm_total", { total: won(total) });
      confirmBtn.disabled = state.busy || !state.open || count === 0 || !state.methods.length;
    }
    var closed = $("buy-closed");
    if (closed) closed.hidden = state.open;
  }

  function request(method, url, body, extraHeaders) {
    var headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    Object.keys(extraHeaders || {}).forEach(function (k) { headers[k] = extraHeaders[k]; });
    return fetch(url, {
      method: method, credentials: "same-origin", headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      return resp.json().then(function (data) { return { status: resp.status, data: data }; },
                              function () { return { status: resp.status, data: null }; });
    });
  }

  function loadCheckout() {
    return request("GET", "/api/v1/broadcasts/" + broadcastId + "/checkout").then(function (r) {
      if (r.status !== 200 || !r.data) return;
      state.open = !!r.data.open;
      state.max = r.data.max_quantity || state.max;
      r.data.items.forEach(function (it) { state.left[String(it.product_id)] = it.left; });
      if (!state.methods.length) renderMethods(r.data.payment_methods || []);
      render();
    }).catch(function () { /* the sheet still works with what the page showed */ });
  }

  function renderMethods(methods) {
    state.methods = methods;
    if (!methodsBox) return;
    methodsBox.textContent = "";
    methods.forEach(function (m, i) {
      var label = document.createElement("label");
      label.className = "choice";
      var input = document.createElement("input");
      input.type = "radio";
      input.name = "payment_method";
      input.value = m.method;
      input.checked = i === 0;
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + m.label));
      methodsBox.appendChild(label);
    });
  }

  var quoteTimer = null;
  var quoteSeq = 0;
  function quote() {
    var code = (postal && postal.value || "").trim();
    var seq = ++quoteSeq;
    var url = "/api/v1/broadcasts/" + broadcastId + "/delivery-quote" + (/^\d{5}$/.test(code) ? "?postal_code=" + code : "");
    request("GET", url).then(function (r) {
      if (seq !== quoteSeq) return; // an older answer arriving late
      if (r.status === 200 && r.data) {
        state.fee = r.data.fee;
        state.quoted = /^\d{5}$/.test(code) ? { postal: code, option: r.data.option } : null;
        deliveryBox.textContent = r.data.label + " · " + r.data.promise_text + " · " +
          (r.data.fee > 0 ? won(r.data.fee) : t("fee_free"));
      } else {
        deliveryBox.textContent = t("quote_error");
      }
      render();
    }).catch(function () { deliveryBox.textContent = t("quote_error"); });
  }

  function value(id) { var el = $(id); return el ? el.value.trim() : ""; }

  function order() {
    var lines = [];
    items.forEach(function (li) {
      var pid = Number(li.getAttribute("data-product"));
      var q = quantity(String(pid));
      if (q > 0) lines.push({ product_id: pid, quantity: q });
    });
    var method = form.querySelector("input[name=payment_method]:checked");
    var body = {
      lines: lines, name: value("buy-name"), phone: value("buy-phone"), postal_code: value("buy-postal"),
      address1: value("buy-address1"), address2: value("buy-address2"), note: value("buy-note"),
      payment_method: method ? method.value : ""
    };
    // The buyer confirms the promise they were shown; if it no longer holds, the server says so.
    if (state.quoted && state.quoted.postal === body.postal_code) body.delivery_option = state.quoted.option;
    if (state.coupons.length && state.couponChoice === "best") body.suggest_coupon = true;
    else if (chosenCoupon()) body.coupons = [Number(state.couponChoice)];
    return body;
  }

  function paymentText(p) {
    var ins = p.payment.instructions || {};
    if (p.payment.method === "bank_transfer") {
      var when = p.payment.pay_by ? new Date(p.payment.pay_by).toLocaleString(strings.locale === "en" ? "en-US" : "ko-KR",
        { timeZone: "Asia/Seoul", month: "short", day: "numeric", hour: "numeric", minute: "2-digit" }) : "";
      return t("pay_transfer", { amount: won(ins.amount), bank: ins.bank, account: ins.account, holder: ins.holder,
                                 when: when });
    }
    return t("pay_cod", { amount: won(ins.amount) });
  }

  function submit(evt) {
    evt.preventDefault();
    if (state.busy) return;
    var body = order();
    if (!body.lines.length) { showError(t("choose")); return; }
    if (!body.name || !body.phone || !/^\d{5}$/.test(body.postal_code) || !body.address1) {
      showError(t("fill"));
      return;
    }
    if (!state.key) state.key = newKey();
    state.busy = true;
    showError("");
    render();
    request("POST", "/api/v1/broadcasts/" + broadcastId + "/purchases", body, {
      "X-CSRF-Token": form.getAttribute("data-csrf") || "",
      "Idempotency-Key": '"' + state.key + '"'
    }).then(function (r) {
      state.busy = false;
      state.unanswered = false;
      var error = r.data && r.data.error;
      if (r.status === 201 && r.data) {
        state.key = null; // the next order is a new one
        form.hidden = true;
        $("buy-done-text").textContent = t("done", { id: r.data.id, total: won(r.data.total) }) + " " +
          r.data.delivery.promise_text;
        $("buy-done-pay").textContent = paymentText(r.data);
        var doneCoupon = $("buy-done-coupon");
        if (doneCoupon) {
          var off = Number(r.data.discount) || 0;
          doneCoupon.textContent = off <= 0 ? "" : r.data.coupon_code
            ? t("done_discount_code", { code: r.data.coupon_code, amount: won(off) })
            : t("done_discount", { amount: won(off) });
          doneCoupon.hidden = off <= 0;
        }
        done.hidden = false;
        loadCheckout();
        loadCoupons(); // a coupon used is gone
      } else if (r.status >= 500 || (error && error.code === "idempotency_in_flight")) {
        state.unanswered = true;
        showError((error && error.message) || t("network")); // same order: keep the key for the retry
      } else {
        state.key = null; // a definitive refusal: fixing it makes a new order
        showError((error && error.message) || t("network"));
        if (error && error.details && error.details.product_id) loadCheckout();
        if (error && (error.code === "delivery_option_changed" || error.code === "outside_delivery_area")) quote();
        if (error && /coupon/.test(error.code || "")) loadCoupons();
      }
      render();
    }).catch(function () {
      state.busy = false; // no answer: the retry reuses the key, so it cannot buy twice
      state.unanswered = true;
      showError(t("network"));
      render();
    });
  }

  root.addEventListener("click", function (evt) {
    var btn = evt.target.closest ? evt.target.closest("[data-step]") : null;
    if (!btn) return;
    var pid = btn.getAttribute("data-for");
    setQuantity(pid, quantity(pid) + Number(btn.getAttribute("data-step")));
  });
  if (postal) {
    postal.addEventListener("input", function () {
      clearTimeout(quoteTimer);
      quoteTimer = setTimeout(quote, 300);
    });
  }
  if (form) form.addEventListener("submit", submit);
  if (couponsBox) {
    couponsBox.addEventListener("change", function (evt) {
      if (evt.target && evt.target.name === "coupon_choice") {
        state.couponChoice = evt.target.value;
        render();
      }
    });
  }
  var again = $("buy-again");
  if (again) {
    again.addEventListener("click", function () {
      items.forEach(function (li) { setQuantity(li.getAttribute("data-product"), 0); });
      done.hidden = true;
      form.hidden = false;
      state.key = null;
      render();
    });
  }

  function opened() {
    if (!form) return; // not signed in: the sheet only invites to join
    // A new opening of the sheet is a new order, unless the last one is still unanswered: then a
    // confirm retries it with the same key.
    if (!state.unanswered) state.key = null;
    loadCheckout();
    quote();
    loadCoupons();
  }
  if (details) {
    details.addEventListener("toggle", function () { if (details.open) opened(); });
    if (details.open) opened();
  }
  if (form) render();

  LC.buySheet = {
    setStock: function (left) {
      Object.keys(left || {}).forEach(function (pid) { state.left[String(pid)] = Number(left[pid]); });
      render();
    },
    setOpen: function (open) { state.open = !!open; render(); },
    refresh: function () { return form ? loadCheckout() : undefined; },
    refreshCoupons: loadCoupons
  };
})();
