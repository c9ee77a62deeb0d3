// The labelling page (/rubrics/{rubric}/label): one key per label. A level's digit (or a, b,
// t for pairwise) presses that button, s follows the skip link, u (or Backspace) submits
// the undo form. Keys typed into a field (the labeller's name) are left alone, and after a
// key the page ignores the next ones until the next item has loaded.
(function () {
  "use strict";
  var busy = false;
  document.addEventListener("keydown", function (e) {
    if (busy || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    var t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    var key = (e.key || "").toLowerCase();
    var target = null;
    document.querySelectorAll("#label-form button[data-key]").forEach(function (b) {
      if (b.dataset.key === key) target = b;
    });
    if (!target && key === "s") target = document.getElementById("skip");
    if (!target && (key === "u" || key === "backspace")) {
      var undo = document.getElementById("undo-form");
      target = undo && undo.querySelector("button");
    }
    if (!target) return;
    e.preventDefault();
    busy = true;
    target.click();
  });
  // Back from the cache (bfcache): the page is live again.
  window.addEventListener("pageshow", function () { busy = false; });
})();
