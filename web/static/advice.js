/* The report page's "Pool sizing" panel: asks GET /api/v1/sites/{id}/advice (the site's own
 * traffic replayed through the simulator at other pool sizes and settings) and shows the
 * answer as text. Rules: requests go through dashboard.js's `api` (the signed-in session),
 * values put in the page as text (never HTML), one request at a time (a replay costs the
 * server seconds).
 */
(function () {
  "use strict";

  var form = document.getElementById("advice-form");
  var out = document.getElementById("advice");
  if (!form || !out) return;
  var siteId = document.body.dataset.siteId;

  function line(text, cls) {
    var p = document.createElement("p");
    if (cls) p.className = cls;
    p.textContent = text;
    out.appendChild(p);
  }
  function pct(x) { return (x * 100).toFixed(1) + "%"; }
  function clear() { while (out.firstChild) out.removeChild(out.firstChild); }

  function render(a) {
    clear();
    var best = a.advice, now = a.current;
    line("Now: a pool of " + now.pool + " tracks " + pct(now.tracked_share) + " of " + now.calls +
      " replayed calls, " + pct(now.correct_share) + " to the right visitor.");
    var settings = "show_delay_s " + best.show_delay_s + ", idle_timeout_s " +
      best.idle_timeout_s + ", hold_s " + best.hold_s;
    if (best.reached) {
      line("Advice: " + best.pool + " numbers (" + settings + ") track " + pct(best.tracked_share) +
        ", " + pct(best.correct_share) + " correct.", "advice-answer");
    } else {
      line("No pool tried reaches " + pct(a.target) + "; the best: " + best.pool + " numbers (" +
        settings + ") track " + pct(best.tracked_share) + ".", "advice-answer");
    }
    var t = a.traffic;
    line(t.visits + " visits, " + t.calls_replayed + " of " + t.calls + " calls replayed.", "muted");
    (a.limits || []).forEach(function (text) { line(text, "muted"); });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var button = form.querySelector("button");
    var target = form.elements.target.value || "0.95";
    var days = form.elements.days.value || "7";
    button.disabled = true;
    clear();
    line("Replaying the site's traffic…", "muted");
    var path = "/sites/" + encodeURIComponent(siteId) + "/advice?target=" +
      encodeURIComponent(target) + "&days=" + encodeURIComponent(days);
    window.CalltrackingDashboard.api("GET", path)
      .then(render, function (e) { clear(); line(String(e.message || e), "error"); })
      .then(function () { button.disabled = false; });
  });
})();
