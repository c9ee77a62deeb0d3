// /compare?runs=a,b: one uPlot chart per metric, one line per run, on one x axis (the step,
// or the tokens seen when the trainers logged them).
// Data: GET <section id="overlay" data-src> (judgeserve/web/charts.py: overlay_payload).
(function () {
  "use strict";
  var root = document.getElementById("overlay");
  if (!root || !window.uPlot) return;
  var PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
  var charts = {};
  window.judgeserveOverlay = charts;
  function ticks(u, vals) {
    return vals.map(function (v) {
      if (v == null) return "";
      var a = Math.abs(v);
      return a !== 0 && (a < 0.01 || a >= 1e6) ? v.toExponential(1) : String(+v.toPrecision(6));
    });
  }

  function columns(metric) {
    var xs = new Set();
    metric.series.forEach(function (s) { s.x.forEach(function (v) { xs.add(v); }); });
    var x = Array.from(xs).sort(function (a, b) { return a - b; });
    var data = [x];
    metric.series.forEach(function (s) {
      var at = new Map();
      s.x.forEach(function (v, i) { at.set(v, s.mean[i]); });
      data.push(x.map(function (v) { var m = at.get(v); return m === undefined ? null : m; }));
    });
    return data;
  }

  function draw(payload) {
    var loading = root.querySelector(".loading");
    if (loading) loading.remove();
    var notes = document.getElementById("overlay-notes");
    if (notes) notes.textContent = payload.notes.join("; ");
    var runs = payload.runs;
    payload.metrics.forEach(function (metric) {
      var card = document.createElement("div");
      card.className = "chart";
      card.dataset.metric = metric.name;
      card.dataset.runs = String(metric.series.length);
      root.appendChild(card);
      var series = [{ label: payload.x === "tokens" ? "tokens seen" : "step" }];
      metric.series.forEach(function (s) {
        // One colour per run; a later judge version of the same run is dashed.
        series.push({ label: s.label || s.run, stroke: PALETTE[runs.indexOf(s.run) % PALETTE.length], width: 1.5, dash: s.version ? [6, 3] : undefined, spanGaps: true, points: { size: 5 } });
      });
      var w = Math.max(280, card.clientWidth - 14);
      var xAxis = { label: series[0].label };
      if (payload.x === "tokens") xAxis.values = ticks;
      charts[metric.name] = new uPlot({
        title: metric.name, width: w, height: 220, series: series,
        scales: { x: { time: false } },
        axes: [xAxis, { label: metric.unit, size: 60, values: ticks }],
        legend: { live: true },
      }, columns(metric), card);
    });
    if (!payload.metrics.length) root.innerHTML = '<p class="muted">No metrics yet.</p>';
    root.dataset.rendered = String(Date.now());
  }

  fetch(root.dataset.src, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(draw)
    .catch(function (e) { root.dataset.error = String(e); });
})();
