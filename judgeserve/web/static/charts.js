// The run page's charts: one uPlot chart per metric family, CI bands, the trainer's loss on
// a second axis over the same steps, alert markers, click → that step's page.
// Data: GET <section id="charts" data-src> (judgeserve/web/charts.py: chart_payload).
(function () {
  "use strict";
  var root = document.getElementById("charts");
  if (!root || !window.uPlot) return;
  var src = root.dataset.src;
  var stepUrl = root.dataset.stepUrl;
  var PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
  var SEVERITY = { info: "#0891b2", warning: "#d97706", critical: "#dc2626" };
  var LOSS_COLOR = "#6b7280";
  // state: metric name -> Map(step -> [mean, lo, hi]); train name -> Map(step -> value)
  var metrics = {}, train = {}, families = [], alerts = [], lossName = "train.loss";
  var charts = {};
  window.judgeserveCharts = charts;

  function merge(payload) {
    lossName = payload.loss || lossName;
    alerts = payload.alerts || alerts;
    (payload.families || []).forEach(function (fam) {
      var known = families.find(function (f) { return f.name === fam.name; });
      if (!known) { known = { name: fam.name, metrics: [] }; families.push(known); }
      fam.metrics.forEach(function (m) {
        if (known.metrics.indexOf(m.name) < 0) known.metrics.push(m.name);
        var map = metrics[m.name] || (metrics[m.name] = new Map());
        m.steps.forEach(function (s, i) { map.set(s, [m.mean[i], m.lo[i], m.hi[i]]); });
      });
    });
    (payload.train || []).forEach(function (t) {
      var map = train[t.name] || (train[t.name] = new Map());
      t.steps.forEach(function (s, i) { map.set(s, t.value[i]); });
    });
  }

  // The newest step with aggregates: live updates re-read from there on (its aggregates
  // grow while its samples are scored; the trainer's metrics after it are re-read too).
  function lastEvalStep() {
    var m = 0;
    Object.keys(metrics).forEach(function (k) { metrics[k].forEach(function (_, s) { if (s > m) m = s; }); });
    return m;
  }

  // Aligned columns for one chart: x, then per metric mean/lo/hi, then loss.
  function columns(names, withLoss) {
    var xs = new Set();
    names.forEach(function (n) { metrics[n].forEach(function (_, s) { xs.add(s); }); });
    var loss = withLoss ? train[lossName] : null;
    if (loss) loss.forEach(function (_, s) { xs.add(s); });
    var x = Array.from(xs).sort(function (a, b) { return a - b; });
    var data = [x];
    names.forEach(function (n) {
      var map = metrics[n];
      [0, 1, 2].forEach(function (j) {
        data.push(x.map(function (s) { var v = map.get(s); return v ? v[j] : null; }));
      });
    });
    if (loss) data.push(x.map(function (s) { var v = loss.get(s); return v === undefined ? null : v; }));
    return data;
  }

  // Alert markers: a triangle on top at the alert's step, and a thin line down the plot
  // while there are few enough to read; markers on the same pixel column are drawn once.
  function markerPlugin() {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height, px = uPlot.pxRatio;
          var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
          var seen = {}, shown = [];
          alerts.forEach(function (a) {
            var x = Math.round(u.valToPos(a.step, "x", true));
            if (x < left || x > right) return;
            var key = x + (a.state === "open" ? "o" : "r");
            if (seen[key]) return;
            seen[key] = true;
            shown.push([x, a]);
          });
          var lines = shown.length <= 40;
          ctx.save();
          shown.forEach(function (m) {
            var x = m[0], a = m[1], open = a.state === "open";
            ctx.strokeStyle = ctx.fillStyle = SEVERITY[a.severity] || SEVERITY.warning;
            if (lines) {
              ctx.globalAlpha = open ? 0.6 : 0.2;
              ctx.lineWidth = px;
              ctx.setLineDash([4 * px, 3 * px]);
              ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
              ctx.setLineDash([]);
            }
            ctx.globalAlpha = open ? 0.9 : 0.35;
            ctx.beginPath(); ctx.moveTo(x - 4 * px, top); ctx.lineTo(x + 4 * px, top);
            ctx.lineTo(x, top + 7 * px); ctx.closePath(); ctx.fill();
          });
          ctx.restore();
        },
      },
    };
  }

  function evalSteps(names) {
    var xs = new Set();
    names.forEach(function (n) { metrics[n].forEach(function (_, s) { xs.add(s); }); });
    return Array.from(xs).sort(function (a, b) { return a - b; });
  }

  function options(title, names, withLoss, width) {
    var series = [{ label: "step" }];
    var bands = [];
    names.forEach(function (n, i) {
      var color = PALETTE[i % PALETTE.length];
      var base = series.length;
      series.push({ label: n, stroke: color, width: 1.5, spanGaps: true, points: { size: 5 } });
      series.push({ label: n + " ci low", stroke: "transparent", spanGaps: true, points: { show: false } });
      series.push({ label: n + " ci high", stroke: "transparent", spanGaps: true, points: { show: false } });
      bands.push({ series: [base + 2, base + 1], fill: color + "22" });
    });
    var axes = [{ label: "step" }, { label: title, size: 60 }];
    if (withLoss) {
      series.push({ label: lossName, stroke: LOSS_COLOR, width: 1.5, dash: [6, 4], scale: "loss", spanGaps: true, points: { show: false } });
      axes.push({ scale: "loss", side: 1, label: lossName, grid: { show: false }, size: 60 });
    }
    return {
      title: title,
      width: width,
      height: 240,
      series: series,
      bands: bands,
      axes: axes,
      scales: { x: { time: false } },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      plugins: [markerPlugin()],
    };
  }

  function chartCard(key) {
    var card = root.querySelector('[data-family="' + CSS.escape(key) + '"]');
    if (!card) {
      card = document.createElement("div");
      card.className = "chart";
      card.dataset.family = key;
      root.appendChild(card);
    }
    return card;
  }

  function draw(key, title, names, isTrain) {
    var withLoss = !isTrain && !!train[lossName];
    var data = isTrain ? trainColumns(names) : columns(names, withLoss);
    var card = chartCard(key);
    var steps = isTrain ? data[0] : evalSteps(names);
    card.dataset.points = String(steps.length);
    var u = charts[key];
    if (u && u.series.length === (isTrain ? names.length + 1 : names.length * 3 + 1 + (withLoss ? 1 : 0))) {
      u.setData(data);
      return;
    }
    if (u) u.destroy();
    var w = width(card);
    var opts = isTrain ? trainOptions(title, names, w) : options(title, names, withLoss, w);
    u = new uPlot(opts, data, card);
    charts[key] = u;
    // The CI bounds are series only so the bands can be filled: keep them out of the legend.
    u.series.forEach(function (s, i) {
      if (/ ci (low|high)$/.test(s.label || "")) {
        var row = u.root.querySelectorAll(".u-legend .u-series")[i];
        if (row) row.classList.add("ci-bound");
      }
    });
    if (!isTrain) {
      u.over.addEventListener("click", function () {
        var idx = u.cursor.idx;
        if (idx == null) return;
        var x = u.data[0][idx];
        var candidates = evalSteps(names);
        if (!candidates.length) return;
        var best = candidates.reduce(function (a, b) { return Math.abs(b - x) < Math.abs(a - x) ? b : a; });
        window.location.href = stepUrl + best;
      });
      u.over.title = "click to open the nearest step";
    }
  }

  function trainColumns(names) {
    var xs = new Set();
    names.forEach(function (n) { train[n].forEach(function (_, s) { xs.add(s); }); });
    var x = Array.from(xs).sort(function (a, b) { return a - b; });
    var data = [x];
    names.forEach(function (n) {
      data.push(x.map(function (s) { var v = train[n].get(s); return v === undefined ? null : v; }));
    });
    return data;
  }

  function trainOptions(title, names, w) {
    return {
      title: title, width: w, height: 200,
      series: [{ label: "step" }].concat(names.map(function (n, i) {
        return { label: n, stroke: i === 0 ? LOSS_COLOR : PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true, points: { show: false } };
      })),
      axes: [{ label: "step" }, { size: 60 }],
      scales: { x: { time: false } },
      plugins: [markerPlugin()],
    };
  }

  function width(card) { return Math.max(280, card.clientWidth - 14); }

  function render() {
    var loading = root.querySelector(".loading");
    if (loading) loading.remove();
    var trainNames = Object.keys(train).sort(function (a, b) {
      return (a === lossName ? -1 : b === lossName ? 1 : a < b ? -1 : 1);
    });
    if (trainNames.length) draw("train", "trainer", trainNames, true);
    families.forEach(function (f) { draw(f.name, f.name, f.metrics, false); });
    if (!trainNames.length && !families.length) {
      root.innerHTML = '<p class="muted">No metrics yet.</p>';
    }
    root.dataset.rendered = String(Date.now());
  }

  function load(fromStep) {
    var url = src + (fromStep > 0 ? "?from_step=" + fromStep : "");
    return fetch(url, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (payload) { merge(payload); render(); })
      .catch(function (e) { root.dataset.error = String(e); });
  }

  load(0);
  document.addEventListener("judgeserve:live", function () {
    // Re-read from the newest step we hold: its aggregates may have grown since.
    load(lastEvalStep());
  });
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      Object.keys(charts).forEach(function (k) {
        var u = charts[k];
        u.setSize({ width: width(u.root.parentElement), height: u.height });
      });
    }, 150);
  });
})();
