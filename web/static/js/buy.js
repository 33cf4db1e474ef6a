/* The buy sheet (viewer/_buy.html): quantity steppers, a running total with the live discount, the
 * delivery options the server offers for the postal code (each with its promise and fee, the buyer
 * picks one), the last address used in this browser offered again, the viewer's coupons for this
 * broadcast (none, one of them, or the best one picked by the server) with the discount estimated
 * here (coupons.js), and the order sent with an Idempotency-Key.
 *
 * On the live page it is a bottom sheet over the page (data-mode="sheet"): any `[data-buy="ID"]`
 * button opens it with that product, and the video keeps playing above it. On the buy page
 * (data-mode="page") it shows the whole line-up; `?product=ID` starts with one of that product.
 *
 * The key is made once when the sheet opens and kept for every retry of the same order, so a
 * confirm pressed twice or resent after a dropped connection buys once. Once the server has given a
 * definitive answer (an order, or a refusal such as "sold out"), the next confirm is a new order and
 * gets a new key.
 *
 * For the live room: LC.buySheet.open(productId), .close(); .setStock({productId: left, ...}) updates
 * the units left (e.g. from a socket push); .refresh() reloads them from the server; .refreshCoupons()
 * reloads the viewer's coupons (after a claim); .setOpen(live) follows the broadcast's state.
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
  var isSheet = root.getAttribute("data-mode") === "sheet";
  var form = $("buy-form");
  var confirmBtn = $("buy-confirm");
  var errorBox = $("buy-error");
  var done = $("buy-done");
  var deliveryBox = $("buy-delivery");
  var optionsBox = $("buy-options");
  var methodsBox = $("buy-methods");
  var postal = $("buy-postal");
  var items = Array.prototype.slice.call(root.querySelectorAll(".buy-item"));
  var couponsField = $("buy-coupons-field");
  var couponsBox = $("buy-coupons");
  var couponNote = $("buy-coupon-note");
  var state = { open: root.getAttribute("data-state") === "live" || root.hasAttribute("data-after-show"), left: {}, fee: 0, key: null, busy: false,
                max: 10, methods: [], unanswered: false,
                coupons: [] /* the viewer's usable coupons here: {id: claim id, ...the drop's terms} */,
                couponChoice: "best" /* "none", "best" or a claim id */, couponSeq: 0,
                options: [] /* the delivery options offered for the postal code typed, fastest first */,
                delivery: null /* the option chosen */, quotedPostal: null,
                product: null /* the product the sheet was opened for */, opener: null };
  var ADDRESS_KEY = "lc:address";

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

  function setText(id, text) {
    var el = $(id);
    if (el) el.textContent = text;
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
    var fee = count > 0 ? deliveryFee() : 0;
    var lines = cartLines();
    var est = estimate(lines);
    renderCouponEstimates(lines);
    if (couponNote) couponNote.textContent = state.coupons.length ? [est.note, t("coupon_note")].filter(Boolean).join(" ") : "";
    var couponRow = $("buy-coupon-row");
    if (couponRow) couponRow.hidden = !(est.off > 0);
    if ($("buy-coupon")) $("buy-coupon").textContent = "−" + won(est.off);
    var total = Math.max(0, subtotal - est.off) + fee;
    setText("buy-usual", won(usual));
    setText("buy-savings", usual > subtotal ? "−" + won(usual - subtotal) : won(0));
    setText("buy-fee", fee > 0 ? won(fee) : t("fee_free"));
    setText("buy-total", won(total));
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

  function deliveryFee() {
    return state.delivery ? Number(state.delivery.fee) || 0 : 0;
  }

  function optionText(o) {
    return o.promise_text + " · " + (o.fee > 0 ? won(o.fee) : t("fee_free"));
  }

  function renderOptions() {
    if (!optionsBox) return;
    optionsBox.textContent = "";
    state.options.forEach(function (o) {
      var label = document.createElement("label");
      label.className = "choice option-choice";
      var input = document.createElement("input");
      input.type = "radio";
      input.name = "delivery_option";
      input.value = o.option;
      input.checked = !!state.delivery && state.delivery.option === o.option;
      label.appendChild(input);
      var body = document.createElement("span");
      body.className = "option-body";
      var name = document.createElement("span");
      name.className = "option-name";
      name.textContent = o.label;
      var sub = document.createElement("span");
      sub.className = "option-sub";
      sub.textContent = optionText(o);
      body.appendChild(name);
      body.appendChild(sub);
      label.appendChild(body);
      optionsBox.appendChild(label);
    });
  }

  var quoteTimer = null;
  var quoteSeq = 0;
  function quote() {
    if (!deliveryBox) return;
    var code = (postal && postal.value || "").trim();
    var seq = ++quoteSeq;
    if (!/^\d{5}$/.test(code)) {
      state.options = [];
      state.delivery = null;
      state.quotedPostal = null;
      deliveryBox.textContent = t("quote_hint");
      deliveryBox.hidden = false;
      renderOptions();
      render();
      return;
    }
    request("GET", "/api/v1/broadcasts/" + broadcastId + "/delivery-quote?postal_code=" + code).then(function (r) {
      if (seq !== quoteSeq) return; // an older answer arriving late
      if (r.status === 200 && r.data) {
        var options = r.data.options && r.data.options.length ? r.data.options : [r.data];
        var before = state.delivery ? state.delivery.option : null;
        state.options = options;
        state.delivery = options[0];
        options.forEach(function (o) { if (o.option === before) state.delivery = o; }); // keep the buyer's pick
        state.quotedPostal = code;
        deliveryBox.hidden = true;
      } else {
        state.options = [];
        state.delivery = null;
        deliveryBox.textContent = t("quote_error");
        deliveryBox.hidden = false;
      }
      renderOptions();
      render();
    }).catch(function () {
      if (seq !== quoteSeq) return;
      deliveryBox.textContent = t("quote_error");
      deliveryBox.hidden = false;
    });
  }

  // -- the address used last time, offered again (this browser only) -----------------------------

  var ADDRESS_FIELDS = { name: "buy-name", phone: "buy-phone", postal_code: "buy-postal", address1: "buy-address1",
                         address2: "buy-address2" };

  function savedAddress() {
    try {
      var a = JSON.parse(window.localStorage.getItem(ADDRESS_KEY) || "null");
      return a && a.postal_code && a.address1 ? a : null;
    } catch (e) {
      return null;
    }
  }

  function rememberAddress(body) {
    var a = {};
    Object.keys(ADDRESS_FIELDS).forEach(function (k) { a[k] = body[k] || ""; });
    try { window.localStorage.setItem(ADDRESS_KEY, JSON.stringify(a)); } catch (e) { /* private mode: not kept */ }
  }

  function showSaved(a) {
    var card = $("buy-saved");
    var fields = $("buy-address");
    if (!card || !fields) return;
    if (!a) {
      card.hidden = true;
      fields.hidden = false;
      return;
    }
    $("buy-saved-text").textContent = [a.name, a.phone].filter(Boolean).join(" · ") + "\n(" + a.postal_code + ") " +
      [a.address1, a.address2].filter(Boolean).join(" ");
    card.hidden = false;
    fields.hidden = true;
  }

  function offerSaved() {
    var a = savedAddress();
    if (!a || !form) return;
    Object.keys(ADDRESS_FIELDS).forEach(function (k) {
      var el = $(ADDRESS_FIELDS[k]);
      if (el && a[k]) el.value = a[k];
    });
    showSaved(a);
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
    // The buyer confirms the option and promise they chose; if it no longer holds, the server says so.
    if (state.delivery && state.quotedPostal === body.postal_code) body.delivery_option = state.delivery.option;
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
      showSaved(null); // show the fields that are missing
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
        rememberAddress(body);
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
        if (error && (error.code === "delivery_option_changed" || error.code === "outside_delivery_area")) {
          state.delivery = null;
          quote();
        }
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
  if (optionsBox) {
    optionsBox.addEventListener("change", function (evt) {
      if (!evt.target || evt.target.name !== "delivery_option") return;
      state.options.forEach(function (o) { if (o.option === evt.target.value) state.delivery = o; });
      render();
    });
  }
  var change = $("buy-saved-change");
  if (change) {
    change.addEventListener("click", function () {
      showSaved(null);
      var first = $("buy-postal");
      if (first) first.focus();
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
      if (isSheet) close();
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

  /** Start the basket with one of this product (the sheet shows that product alone). */
  function choose(pid) {
    state.product = pid == null ? null : String(pid);
    items.forEach(function (li) {
      var id = li.getAttribute("data-product");
      var mine = id === state.product;
      if (isSheet) {
        li.hidden = !mine;
        if (!mine && quantity(id) > 0) qtyInput(id).textContent = "0";
      }
      if (mine && quantity(id) === 0) qtyInput(id).textContent = "1";
    });
    render();
  }

  function onKey(evt) {
    if (evt.key === "Escape") close();
  }

  function open(pid, opener) {
    if (!isSheet) return;
    document.querySelectorAll(".sheet:not([hidden])").forEach(function (other) {
      if (other !== root) other.hidden = true; // one sheet at a time (the line-up gives way to the buy sheet)
    });
    state.opener = opener || document.activeElement;
    if (done && !done.hidden) {
      done.hidden = true;
      if (form) form.hidden = false;
    }
    if (form) choose(pid);
    root.hidden = false;
    document.body.classList.add("has-sheet");
    document.addEventListener("keydown", onKey);
    var panel = root.querySelector(".sheet-panel");
    if (panel) {
      panel.setAttribute("tabindex", "-1");
      panel.focus({ preventScroll: true });
    }
    opened();
  }

  function close() {
    if (!isSheet || root.hidden) return;
    root.hidden = true;
    if (!document.querySelector(".sheet:not([hidden])")) document.body.classList.remove("has-sheet");
    document.removeEventListener("keydown", onKey);
    if (state.opener && state.opener.focus && document.contains(state.opener)) state.opener.focus({ preventScroll: true });
  }

  if (isSheet) {
    root.addEventListener("click", function (evt) {
      if (evt.target.closest && evt.target.closest("[data-close]")) close();
    });
    document.addEventListener("click", function (evt) {
      var btn = evt.target.closest ? evt.target.closest("[data-buy]") : null;
      if (!btn || btn.disabled) return;
      open(btn.getAttribute("data-buy"), btn);
    });
  }

  if (form) {
    offerSaved();
    render();
    if (!isSheet) {
      var wanted = /[?&]product=(\d+)/.exec(window.location.search);
      if (wanted && qtyInput(wanted[1])) choose(wanted[1]);
      opened();
    }
  }

  LC.buySheet = {
    open: open,
    close: close,
    setStock: function (left) {
      Object.keys(left || {}).forEach(function (pid) { state.left[String(pid)] = Number(left[pid]); });
      render();
    },
    setOpen: function (open) { state.open = !!open; render(); },
    refresh: function () { return form ? loadCheckout() : undefined; },
    refreshCoupons: loadCoupons
  };
})();
