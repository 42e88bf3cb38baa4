// feedmesh: small progressive JavaScript. Every page works without it; this adds keyboard
// keys (j/k move, o opens, / searches, ? lists them), copy buttons, and live updates of
// the stream over Server-Sent Events ("N new", shown when asked, so nothing moves).
(function () {
  "use strict";
  function items() { return Array.prototype.slice.call(document.querySelectorAll(".item")); }
  var current = -1;
  function focusItem(i) {
    var list = items();
    if (!list.length) return;
    current = Math.max(0, Math.min(list.length - 1, i));
    list.forEach(function (el, n) { el.classList.toggle("current", n === current); });
    var el = list[current];
    el.scrollIntoView({ block: "nearest" });
    var link = el.querySelector("a, summary");
    if (link) link.focus({ preventScroll: true });
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    if (e.key === "j") { focusItem(current + 1); e.preventDefault(); }
    else if (e.key === "k") { focusItem(current - 1); e.preventDefault(); }
    else if (e.key === "o" && current >= 0) {
      var d = items()[current].querySelector("details");
      if (d) d.open = !d.open;
    } else if (e.key === "/") {
      var q = document.getElementById("q");
      if (q) { q.focus(); e.preventDefault(); }
    } else if (e.key === "?") {
      var k = document.getElementById("keys");
      if (k) k.style.display = k.style.display === "block" ? "none" : "block";
    }
  });
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("button[data-copy]");
    if (!b) return;
    var text = document.getElementById(b.getAttribute("data-copy"));
    if (!text || !navigator.clipboard) return;
    navigator.clipboard.writeText(text.textContent.trim()).then(function () {
      var was = b.textContent;
      b.textContent = "Copied";
      setTimeout(function () { b.textContent = was; }, 1500);
    });
  });
  var live = document.querySelector("[data-live]");
  if (live && window.EventSource) {
    var source = new EventSource(live.getAttribute("data-live"));
    var fresh = 0;
    source.addEventListener("change", function () {
      fresh += 1;
      var button = document.getElementById("new-items");
      button.textContent = fresh === 1 ? "1 new item: show" : fresh + " new items: show";
      button.hidden = false;
    });
    var button = document.getElementById("new-items");
    if (button) button.addEventListener("click", function () { window.location.reload(); });
  }
})();
