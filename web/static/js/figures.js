/* The host's figures (orders/figures.html): headline numbers, units per product, and sales per
 * minute drawn as an SVG bar chart (no chart library). The figures are fetched from
 * /api/v1/broadcasts/{id}/figures every few seconds while the page is visible.
 *
 * For the live room: LC.figures.update(figures) draws figures pushed over the socket (the same JSON
 * as the endpoint); LC.figures.stopPolling() stops the refresh once pushes arrive.
 */
(function () {
  "use strict";

  var root = document.getElementById("figures");
  if (!root) return;
  var LC = (window.LC = window.LC || {});
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";
  var REFRESH_MS = 5000;
  var strings = {};
  try { strings = JSON.parse(($("figures-i18n") || {}).textContent || "{}"); } catch (e) { strings = {}; }
  var broadcastId = root.getAttribute("data-broadcast");
  var timer = null;
  var polling = true;

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

  function shortWon(amount) {
    if (amount >= 10000 && strings.locale !== "en") return Math.round(amount / 1000) / 10 + "만";
    if (amount >= 1000 && strings.locale === "en") return Math.round(amount / 100) / 10 + "k";
    return String(amount);
  }

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** Bars of revenue per minute, with the best minute's value and a few minute labels. */
  function drawChart(minutes) {
    var svg = $("figures-chart");
    if (!svg) return;
    Array.prototype.slice.call(svg.childNodes).forEach(function (n) {
      if (n.nodeName.toLowerCase() !== "desc") svg.removeChild(n);
    });
    var W = 640, H = 220, left = 44, bottom = 24, top = 12;
    var plotW = W - left - 8, plotH = H - top - bottom;
    var max = 0;
    minutes.forEach(function (m) { if (m.revenue > max) max = m.revenue; });
    svg.appendChild(el("line", { x1: left, y1: top + plotH, x2: W - 8, y2: top + plotH, stroke: "#cbb9a6" }));
    if (!minutes.length || max === 0) {
      svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#7a6a5c", "font-size": 14 },
                         t("no_sales")));
      return;
    }
    svg.appendChild(el("text", { x: left - 6, y: top + 10, "text-anchor": "end", fill: "#7a6a5c", "font-size": 11 },
                       shortWon(max)));
    svg.appendChild(el("line", { x1: left, y1: top, x2: W - 8, y2: top, stroke: "#eedfcd", "stroke-dasharray": "4 4" }));
    var n = minutes.length;
    var slot = plotW / n;
    var barW = Math.max(1, slot * 0.8);
    var labelEvery = Math.max(1, Math.ceil(n / 8));
    minutes.forEach(function (m, i) {
      var h = Math.round((m.revenue / max) * plotH);
      var x = left + i * slot + (slot - barW) / 2;
      var bar = el("rect", { x: x.toFixed(1), y: top + plotH - h, width: barW.toFixed(1), height: h, rx: 2,
                             fill: m.revenue === max ? "#e5322b" : "#f77b4a" });
      bar.appendChild(el("title", {}, t("minute", { n: m.minute }) + ": " + won(m.revenue) + " · " + m.orders));
      svg.appendChild(bar);
      if (i % labelEvery === 0) {
        svg.appendChild(el("text", { x: (left + i * slot + slot / 2).toFixed(1), y: H - 6, "text-anchor": "middle",
                                     fill: "#7a6a5c", "font-size": 11 }, String(m.minute)));
      }
    });
  }

  function setText(id, text) {
    var node = $(id);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function update(f) {
    if (!f) return;
    setText("fig-orders", String(f.orders));
    setText("fig-revenue", won(f.revenue));
    setText("fig-units", String(f.units));
    setText("fig-buyers", f.buyers + " / " + f.viewers +
      (f.conversion === null || f.conversion === undefined ? "" : " (" + (f.conversion * 100).toFixed(1) + "%)"));
    (f.products || []).forEach(function (p) {
      var row = root.querySelector('tr[data-product="' + p.product_id + '"]');
      if (!row) return;
      var cells = { units: String(p.units), revenue: won(p.revenue), left: p.left + " / " + p.reserved };
      Object.keys(cells).forEach(function (k) {
        var cell = row.querySelector('[data-field="' + k + '"]');
        if (cell && cell.textContent !== cells[k]) cell.textContent = cells[k];
      });
    });
    drawChart(f.minutes || []);
    var when = new Date(f.at).toLocaleTimeString(strings.locale === "en" ? "en-US" : "ko-KR",
      { timeZone: "Asia/Seoul", hour: "numeric", minute: "2-digit", second: "2-digit" });
    var status = $("figures-status");
    if (status) { status.setAttribute("data-status", "connected"); status.textContent = t("updated", { when: when }); }
  }

  function schedule() {
    clearTimeout(timer);
    if (polling) timer = setTimeout(refresh, REFRESH_MS);
  }

  function refresh() {
    if (document.hidden) { schedule(); return; }
    fetch("/api/v1/broadcasts/" + encodeURIComponent(broadcastId) + "/figures",
          { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) { if (!resp.ok) throw new Error(String(resp.status)); return resp.json(); })
      .then(function (f) { update(f); })
      .catch(function () {
        var status = $("figures-status");
        if (status) { status.setAttribute("data-status", "reconnecting"); status.textContent = t("stale"); }
      })
      .then(schedule);
  }

  var initial = null;
  try { initial = JSON.parse(($("figures-data") || {}).textContent || "null"); } catch (e) { initial = null; }
  if (initial) {
    update(initial);
    schedule();
  } else {
    refresh(); // a page without figures of its own (the console) asks at once
  }
  document.addEventListener("visibilitychange", function () { if (!document.hidden && polling) refresh(); });

  LC.figures = {
    update: update,
    stopPolling: function () { polling = false; clearTimeout(timer); }
  };
})();
