// Live updates: one server-sent event stream per page (see judgeserve/web/live.py).
// On a change the page re-reads itself and swaps its [data-live] regions (server-rendered,
// escaped HTML); the run page's charts listen for the "judgeserve:live" event.
(function () {
  "use strict";
  var body = document.body;
  var url = body.dataset.liveUrl;
  if (!url || !window.EventSource) return;
  var since = body.dataset.liveSince;
  if (since) url += (url.indexOf("?") < 0 ? "?" : "&") + "since=" + encodeURIComponent(since);
  var status = document.getElementById("live-status");
  var timer = null;
  var refreshing = false;
  var again = false;

  function setStatus(text, cls) {
    if (!status) return;
    status.textContent = text;
    status.className = "live-status " + cls;
  }

  function toast(text, cls) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast " + (cls || "");
    el.textContent = text;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, 8000);
  }

  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.href, { headers: { "X-Judgeserve-Live": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) el.innerHTML = fresh.innerHTML;
        });
        body.dataset.liveRefreshed = String(Date.now());
      })
      .catch(function () {})
      .then(function () {
        refreshing = false;
        if (again) { again = false; schedule(); }
      });
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }

  function handle(kind) {
    return function (ev) {
      var data = {};
      try { data = JSON.parse(ev.data); } catch (e) { /* keep {} */ }
      if (kind === "alert" && data.alerts) {
        data.alerts.forEach(function (a) {
          toast("New " + a.severity + " alert on " + a.run + " at step " + a.step + ": " + a.rule, "sev-" + a.severity);
        });
      }
      document.dispatchEvent(new CustomEvent("judgeserve:live", { detail: { kind: kind, data: data } }));
      schedule();
    };
  }

  var source = new EventSource(url);
  source.addEventListener("hello", function () { setStatus("live", "on"); });
  source.addEventListener("step", handle("step"));
  source.addEventListener("alert", handle("alert"));
  source.addEventListener("alerts", handle("alerts"));
  source.onerror = function () { setStatus("reconnecting", "off"); };
  window.addEventListener("pagehide", function () { source.close(); });

  // Resolve buttons: post without leaving the page, then refresh the list.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains("resolve")) return;
    ev.preventDefault();
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    fetch(form.action, { method: "POST", headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok && r.status !== 404) throw new Error("HTTP " + r.status);
        var row = form.closest("tr");
        if (row) row.className = "state-resolved";
        form.replaceWith(document.createTextNode("resolved"));
        schedule();
      })
      .catch(function (e) {
        if (button) button.disabled = false;
        toast("Could not resolve: " + e.message, "sev-critical");
      });
  });
})();
