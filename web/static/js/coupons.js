/* Coupons in the browser: how a coupon reads ("3,000원 할인", "15% 할인 (최대 5,000원)") and what it
 * takes off a cart, estimated before the order is sent. The maths is coupons/rules.py's, in whole won:
 *
 * - The minimum order is judged on the eligible subtotal: the cart's lines the coupon covers (every
 *   line, one stall's lines, or some products' lines), at the prices charged.
 * - Fixed: the amount, never more than the eligible subtotal. Percent: the eligible subtotal times the
 *   percentage, rounded down to the won, then capped at max_discount.
 * - The best coupon for a cart is the one that takes the most off on its own (a tie goes to the lower
 *   id); a coupon that takes nothing off is never picked.
 *
 * The server prices the order again when it is placed: what is shown here is an estimate.
 *
 * LC.coupons.label(coupon), .parts(coupon), .minimum(coupon), .scope(coupon), .discount(coupon, lines),
 * .best(coupons, lines). A coupon has kind, value, max_discount, min_order, scope, merchant_id,
 * product_ids (and id for `best`); a line has product_id, merchant_id and line_total.
 */
(function () {
  "use strict";

  var LC = (window.LC = window.LC || {});

  function t(key, params) {
    return typeof LC.t === "function" ? LC.t(key, params) : key;
  }

  function won(n) {
    if (typeof LC.won === "function") return LC.won(n);
    return Math.round(Number(n) || 0).toLocaleString("en-US") + "원";
  }

  function int(n) {
    n = Number(n);
    return isFinite(n) ? Math.floor(n) : 0;
  }

  /** "3,000원 할인", "15% 할인", "15% 할인 (최대 5,000원)". */
  function label(c) {
    if (!c) return "";
    if (c.kind === "percent") {
      if (c.max_discount) return t("coupon_percent_cap", { percent: int(c.value), cap: won(c.max_discount) });
      return t("coupon_percent", { percent: int(c.value) });
    }
    return t("coupon_fixed", { amount: won(c.value) });
  }

  /** The label in two parts, for a big line and a small one: {main: "15% 할인", cap: "(최대 5,000원)"}. */
  function parts(c) {
    if (c && c.kind === "percent" && c.max_discount) {
      return { main: t("coupon_percent", { percent: int(c.value) }), cap: t("coupon_cap", { cap: won(c.max_discount) }) };
    }
    return { main: label(c), cap: "" };
  }

  /** "30,000원 이상 구매 시", or "" without a minimum. */
  function minimum(c) {
    return c && int(c.min_order) > 0 ? t("coupon_min", { amount: won(c.min_order) }) : "";
  }

  /** What the coupon covers, when it is not everything. */
  function scope(c) {
    if (!c) return "";
    if (c.scope === "merchant") return t("coupon_scope_merchant");
    if (c.scope === "products") return t("coupon_scope_products");
    return "";
  }

  function covers(c, line) {
    if (c.scope === "merchant") return Number(line.merchant_id) === Number(c.merchant_id);
    if (c.scope === "products") {
      return (c.product_ids || []).some(function (id) { return Number(id) === Number(line.product_id); });
    }
    return true;
  }

  function amountOff(c, subtotal) {
    var off;
    if (c.kind === "percent") {
      off = Math.floor(subtotal * int(c.value) / 100); // rounded down: never a won more than promised
      if (c.max_discount != null && c.max_discount !== "") off = Math.min(off, int(c.max_discount));
    } else {
      off = int(c.value);
    }
    return Math.max(0, Math.min(off, subtotal));
  }

  /**
   * What the coupon alone takes off the cart: {ok: true, off, eligible} or
   * {ok: false, reason: "out_of_scope" | "below_minimum" | "empty", missing}.
   */
  function discount(c, lines) {
    lines = (lines || []).filter(function (l) { return int(l.line_total) > 0; });
    if (!lines.length) return { ok: false, reason: "empty", missing: 0 };
    var covered = lines.filter(function (l) { return covers(c, l); });
    if (!covered.length) return { ok: false, reason: "out_of_scope", missing: 0 };
    var eligible = covered.reduce(function (sum, l) { return sum + int(l.line_total); }, 0);
    if (eligible < int(c.min_order)) {
      return { ok: false, reason: "below_minimum", missing: int(c.min_order) - eligible };
    }
    return { ok: true, off: amountOff(c, eligible), eligible: eligible };
  }

  /** Of several coupons, the one that takes the most off this cart: {coupon, off}, or null. */
  function best(coupons, lines) {
    var chosen = null;
    (coupons || []).forEach(function (c, position) {
      var r = discount(c, lines);
      if (!r.ok || r.off <= 0) return;
      var better = !chosen || r.off > chosen.off ||
        (r.off === chosen.off && (int(c.id) < int(chosen.coupon.id) ||
                                  (int(c.id) === int(chosen.coupon.id) && position < chosen.position)));
      if (better) chosen = { coupon: c, off: r.off, position: position };
    });
    return chosen ? { coupon: chosen.coupon, off: chosen.off } : null;
  }

  LC.coupons = { label: label, parts: parts, minimum: minimum, scope: scope, covers: covers, discount: discount, best: best };
})();
