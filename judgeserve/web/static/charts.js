// The run page's charts: the headline (the loss against the few signals that matter, each
// on its own scale, the best checkpoint and its band marked), then one uPlot chart per
// metric family and unit, CI bands, the trainer's loss on a second axis over the same
// steps, alert markers, click → that step's page; the trainer's counters start hidden.
// A judge metric judged by more than one judge version is one series per version, with a
// violet marker where a new version took over (judgeserve/drift.py).
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
  var headline = [], score = new Map(), best = null, hidden = {};
  var judgeChanges = {}, JUDGE_COLOR = "#7c3aed";  // series name -> where its version began
  var BEST_COLOR = "#059669", SCORE_COLOR = "#111827";
  // The headline's signals: no green, which marks the best checkpoint there.
  var HEADLINE_PALETTE = ["#2563eb", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777"];
  // Tick labels that stay readable for a learning rate (1e-4) or a flop count (1e15).
  function ticks(u, vals) {
    return vals.map(function (v) {
      if (v == null) return "";
      var a = Math.abs(v);
      return a !== 0 && (a < 0.01 || a >= 1e6) ? v.toExponential(1) : String(+v.toPrecision(6));
    });
  }
  var charts = {};
  window.judgeserveCharts = charts;

  function merge(payload) {
    lossName = payload.loss || lossName;
    alerts = payload.alerts || alerts;
    (payload.judge_changes || []).forEach(function (c) { judgeChanges[c.series] = c; });
    // The ranking covers the whole run on every read: replace, do not merge.
    best = payload.best || null;
    if (payload.headline) {
      headline = payload.headline.metrics.length ? payload.headline.metrics : headline;
      score = new Map();
      payload.headline.score.steps.forEach(function (s, i) { score.set(s, payload.headline.score.value[i]); });
    }
    (payload.families || []).forEach(function (fam) {
      var known = families.find(function (f) { return f.name === fam.name; });
      if (!known) { known = { name: fam.name, unit: fam.unit, metrics: [] }; families.push(known); }
      fam.metrics.forEach(function (m) {
        if (known.metrics.indexOf(m.name) < 0) known.metrics.push(m.name);
        var map = metrics[m.name] || (metrics[m.name] = new Map());
        m.steps.forEach(function (s, i) { map.set(s, [m.mean[i], m.lo[i], m.hi[i]]); });
      });
    });
    (payload.train || []).forEach(function (t) {
      hidden[t.name] = !!t.hidden;
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
  function markerPlugin(withBand, names) {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height, px = uPlot.pxRatio;
          var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
          if (best) drawBest(u, withBand);
          drawJudgeChanges(u, names || []);
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

  // The best checkpoint: a solid green line labelled "best"; on the headline also the
  // checkpoints that cannot be told apart from it, as light green columns.
  function drawBest(u, withBand) {
    var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height, px = uPlot.pxRatio;
    ctx.save();
    ctx.setLineDash([]);
    ctx.fillStyle = ctx.strokeStyle = BEST_COLOR;
    if (withBand) {
      ctx.globalAlpha = 0.12;
      best.band.forEach(function (s) {
        var x = u.valToPos(s, "x", true);
        ctx.fillRect(x - 5 * px, top, 10 * px, height);
      });
    }
    var x = Math.round(u.valToPos(best.step, "x", true));
    if (x >= u.bbox.left && x <= u.bbox.left + u.bbox.width) {
      ctx.globalAlpha = 0.9;
      ctx.lineWidth = 2 * px;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
      ctx.font = (11 * px) + "px system-ui, sans-serif";
      ctx.fillText("best", x + 4 * px, top + 12 * px);
    }
    ctx.restore();
  }

  // Where a judge version took over: a violet dash-dot line labelled "judge changed".
  function changesFor(names) {
    return names.map(function (n) { return judgeChanges[n]; }).filter(Boolean);
  }

  function drawJudgeChanges(u, names) {
    var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height, px = uPlot.pxRatio;
    var seen = {};
    ctx.save();
    ctx.strokeStyle = ctx.fillStyle = JUDGE_COLOR;
    ctx.lineWidth = 1.5 * px;
    ctx.font = (11 * px) + "px system-ui, sans-serif";
    changesFor(names).forEach(function (c) {
      var x = Math.round(u.valToPos(c.step, "x", true));
      if (seen[x] || x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
      seen[x] = true;
      ctx.setLineDash([6 * px, 3 * px, 1 * px, 3 * px]);
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillText("judge changed", x + 4 * px, top + height - 6 * px);
    });
    ctx.restore();
  }

  function evalSteps(names) {
    var xs = new Set();
    names.forEach(function (n) { metrics[n].forEach(function (_, s) { xs.add(s); }); });
    return Array.from(xs).sort(function (a, b) { return a - b; });
  }

  // A near-constant series (a score equal up to float noise, 100.00000000000004) gives uPlot
  // a range narrower than the float spacing at that magnitude: its tick loop then never
  // advances and throws "Invalid array length". Such ranges are widened first.
  function safeRange(u, min, max) {
    if (min == null || max == null) return [min, max];
    var mag = Math.max(Math.abs(min), Math.abs(max), 1e-12);
    if (max - min < mag * 1e-6) { min -= mag * 1e-3; max += mag * 1e-3; }
    return uPlot.rangeNum(min, max, 0.1, true);
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
    var unit = (families.find(function (f) { return f.name === title; }) || {}).unit;
    var axes = [{ label: "step" }, { label: unit ? title + " (" + unit + ")" : title, size: 60, values: ticks }];
    if (withLoss) {
      series.push({ label: lossName, stroke: LOSS_COLOR, width: 1.5, dash: [6, 4], scale: "loss", spanGaps: true, points: { show: false } });
      axes.push({ scale: "loss", side: 1, label: lossName, grid: { show: false }, size: 60, values: ticks });
    }
    return {
      title: title,
      width: width,
      height: 240,
      series: series,
      bands: bands,
      axes: axes,
      scales: { x: { time: false }, y: { range: safeRange } },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      plugins: [markerPlugin(false, names)],
    };
  }

  // The headline: loss on the left axis; each signal on a scale of its own (so a 0.02
  // loop share and a 4.1 judge score both fill the height; the legend reads the values).
  function headlineNames() {
    var names = [];
    if (score.size) names.push("quality score");
    headline.forEach(function (n) { if (metrics[n]) names.push(n); });
    return names;
  }

  function headlineColumns(names) {
    var xs = new Set();
    var loss = train[lossName];
    if (loss) loss.forEach(function (_, s) { xs.add(s); });
    names.forEach(function (n) {
      var map = n === "quality score" ? score : metrics[n];
      map.forEach(function (_, s) { xs.add(s); });
    });
    var x = Array.from(xs).sort(function (a, b) { return a - b; });
    var data = [x];
    data.push(x.map(function (s) { var v = loss ? loss.get(s) : undefined; return v === undefined ? null : v; }));
    names.forEach(function (n) {
      var map = n === "quality score" ? score : metrics[n];
      data.push(x.map(function (s) {
        var v = map.get(s);
        if (v === undefined) return null;
        return n === "quality score" ? v : v[0];
      }));
    });
    return data;
  }

  function headlineOptions(names, w) {
    var series = [{ label: "step" },
      { label: lossName, stroke: LOSS_COLOR, width: 2, dash: [6, 4], scale: "loss", spanGaps: true, points: { show: false } }];
    var scales = { x: { time: false } };
    names.forEach(function (n, i) {
      var key = "h" + i;
      scales[key] = { auto: true, range: safeRange };
      series.push({
        label: n, scale: key, spanGaps: true, points: { size: 6 },
        stroke: n === "quality score" ? SCORE_COLOR : HEADLINE_PALETTE[i % HEADLINE_PALETTE.length],
        width: n === "quality score" ? 3 : 1.5,
      });
    });
    return {
      title: "headline: training loss against quality (each signal on its own scale)",
      width: w, height: 300, series: series, scales: scales,
      axes: [{ label: "step" }, { scale: "loss", label: lossName, size: 60, values: ticks }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      plugins: [markerPlugin(true, names)],
    };
  }

  function drawHeadline() {
    var names = headlineNames();
    if (!names.length) return;
    var card = chartCard("headline");
    card.classList.add("headline");
    if (root.firstElementChild !== card) root.insertBefore(card, root.firstElementChild);
    var data = headlineColumns(names);
    card.dataset.points = String(data[0].length);
    card.dataset.signals = names.join(",");
    card.dataset.judgeChanges = changesFor(names).map(function (c) { return c.step; }).join(",");
    var u = charts.headline;
    if (u && u.series.length === names.length + 2) { u.setData(data); u.redraw(); return; }
    if (u) u.destroy();
    u = new uPlot(headlineOptions(names, width(card)), data, card);
    charts.headline = u;
    u.over.addEventListener("click", function () {
      var idx = u.cursor.idx;
      if (idx == null) return;
      var x = u.data[0][idx];
      var steps = Array.from(new Set([].concat.apply([], names.map(function (n) {
        return Array.from((n === "quality score" ? score : metrics[n]).keys());
      })))).sort(function (a, b) { return a - b; });
      if (!steps.length) return;
      var near = steps.reduce(function (a, b) { return Math.abs(b - x) < Math.abs(a - x) ? b : a; });
      window.location.href = stepUrl + near;
    });
    u.over.title = "click to open the nearest step";
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
    card.dataset.series = names.join("|");
    card.dataset.judgeChanges = changesFor(names).map(function (c) { return c.step; }).join(",");
    var u = charts[key];
    if (u && u.series.length === (isTrain ? names.length + 1 : names.length * 3 + 1 + (withLoss ? 1 : 0))) {
      u.setData(data);
      u.redraw();
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

  // The trainer's numbers: one scale each (the loss on the left axis, the first other one
  // shown on the right); counters (flos, runtime, epoch) hidden until clicked in the legend.
  function trainOptions(title, names, w) {
    var scales = { x: { time: false } };
    var axes = [{ label: "step" }];
    var right = null;
    var series = [{ label: "step" }].concat(names.map(function (n, i) {
      var key = n === lossName ? "loss" : "t" + i;
      scales[key] = { auto: true, range: safeRange };
      if (n === lossName) axes.push({ scale: "loss", label: n, size: 60, values: ticks });
      else if (!right && !hidden[n]) { right = n; axes.push({ scale: key, side: 1, label: n, grid: { show: false }, size: 70, values: ticks }); }
      return { label: n, scale: key, show: !hidden[n], stroke: n === lossName ? LOSS_COLOR : PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true, points: { show: false } };
    }));
    return {
      title: title, width: w, height: 200, series: series, scales: scales, axes: axes,
      plugins: [markerPlugin(false)],
    };
  }

  function width(card) { return Math.max(280, card.clientWidth - 14); }

  function render() {
    var loading = root.querySelector(".loading");
    if (loading) loading.remove();
    var trainNames = Object.keys(train).sort(function (a, b) {
      return (a === lossName ? -1 : b === lossName ? 1 : a < b ? -1 : 1);
    });
    drawHeadline();
    families.forEach(function (f) { draw(f.name, f.name, f.metrics, false); });
    if (trainNames.length) draw("train", "trainer", trainNames, true);
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
