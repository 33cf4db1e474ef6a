/* The buy sheet (viewer/_buy.html): quantity steppers, a running total with the live discount, the
 * delivery promise quoted by the server as the postal code is typed, and the order sent with an
 * Idempotency-Key.
 *
 * The key is made once when the sheet opens and kept for every retry of the same order, so a
 * confirm pressed twice or resent after a dropped connection buys once. Once the server has given a
 * definitive answer (an order, or a refusal such as "sold out"), the next confirm is a new order and
 * gets a new key.
 *
 * For the live room: LC.buySheet.setStock({productId: left, ...}) updates the units left (e.g. from
 * a socket push); LC.buySheet.refresh() reloads them from the server.
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
  var state = { open: root.getAttribute("data-state") === "live", left: {}, fee: 0, key: null, busy: false,
                max: 10, methods: [], unanswered: false,
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
    $("buy-usual").textContent = won(usual);
    $("buy-savings").textContent = usual > subtotal ? "−" + won(usual - subtotal) : won(0);
    $("buy-fee").textContent = fee > 0 ? won(fee) : t("fee_free");
    $("buy-total").textContent = won(subtotal + fee);
    if (confirmBtn) {
      confirmBtn.textContent = state.busy ? t("sending") : t("confirm_total", { total: won(subtotal + fee) });
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
        done.hidden = false;
        loadCheckout();
      } else if (r.status >= 500 || (error && error.code === "idempotency_in_flight")) {
        state.unanswered = true;
        showError((error && error.message) || t("network")); // same order: keep the key for the retry
      } else {
        state.key = null; // a definitive refusal: fixing it makes a new order
        showError((error && error.message) || t("network"));
        if (error && error.details && error.details.product_id) loadCheckout();
        if (error && (error.code === "delivery_option_changed" || error.code === "outside_delivery_area")) quote();
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
    // A new opening of the sheet is a new order, unless the last one is still unanswered: then a
    // confirm retries it with the same key.
    if (!state.unanswered) state.key = null;
    loadCheckout();
    quote();
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
    refresh: loadCheckout
  };
})();
