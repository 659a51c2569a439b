/* A site's report (/dashboard/sites/{id}/reports), drawn as inline SVG charts with tables.
 *
 * Rules: the range is days in the account's time zone (the server counts days and months in it
 * too), the last day included; robots' visits are shown apart from visits; a section with
 * nothing to show says so in a sentence instead of drawing rows of zeros; counts agree with their
 * nouns ("1 call", "keep 1 number") and durations read like the advice does ("15 min").
 */
(function () {
  "use strict";

  var KINDS = ["dynamic", "held", "cooled", "static", "initial", "expired", "untracked",
    "unattributed", "unknown"];
  function D() { return window.CalltrackingDashboard; }
  function P() { return window.CalltrackingProduct; }
  function $(id) { return document.getElementById(id); }

  /** Like core/reports/advice.say_s: "35 s", "20 min", "9 min 40 s". */
  function sayS(seconds) {
    if (seconds < 120) return seconds + " s";
    var minutes = Math.floor(seconds / 60), rest = seconds % 60;
    return rest ? minutes + " min " + rest + " s" : minutes + " min";
  }
  function empty(text) { return D().el("p", { "class": "empty-state", text: text }); }
  function total(items) { return items.reduce(function (n, i) { return n + (i.value || 0); }, 0); }

  function reportsPage() {
    var id = document.body.dataset.siteId, params = D().pageParams(), zone = "UTC";
    P().context().then(function (ctx) {
      zone = ctx.zoneOf(id);
      var site = ctx.site(id);
      if (site) $("report-title").textContent = "Reports · " + site.name;
      var today = P().day(Date.now(), zone);
      $("r-since").value = params.since || P().day(Date.parse(P().dayStart(today, zone, -29)), zone);
      $("r-until").value = params.until || today;
      $("r-zone").textContent = "Days in " + P().shortZone(zone);
      load();
    }, D().failed);
    function load() {
      var since = $("r-since").value, until = $("r-until").value;
      if (!since || !until) { D().flash("Pick both days of the range."); return; }
      D().flash("");
      D().api("GET", "/sites/" + encodeURIComponent(id) + "/report" +
        D().query({ since: P().dayStart(since, zone, 0), until: P().dayStart(until, zone, 1) })).then(renderReport, D().failed);
    }
    $("report-range").addEventListener("submit", function (ev) {
      ev.preventDefault();
      history.replaceState(null, "", location.pathname + D().query({ since: $("r-since").value, until: $("r-until").value }));
      load();
    });
  }

  function renderReport(r) {
    var root = D().clear($("report"));
    D().setChartSpace(Math.max(280, Math.min(root.clientWidth || 560, 900) - 34));
    root.appendChild(accuracySection(r));
    root.appendChild(sourcesSection(r.by_source || []));
    root.appendChild(callsSection(r.calls || {}));
    root.appendChild(untrackedSection(r.untracked || {}));
    root.appendChild(adviceSection(r.advice || {}));
    root.appendChild(poolSection(r.pool || {}));
    root.appendChild(leadsSection(r.leads_by_month || []));
    root.appendChild(missedSection(r.missed || {}));
  }

  function accuracySection(r) {
    var el = D().el, acc = r.accuracy || {}, calls = r.calls || {};
    var head = D().section("accuracy", "Tracking accuracy", "wide");
    head.appendChild(el("div", { "class": "headline" },
      el("span", { "class": "big", id: "accuracy-figure", text: D().fmtPercent(acc.ratio) }),
      el("span", { text: (acc.tracked || 0) + " tracked of " + P().plural(acc.counted || 0, "call") + " to dynamic and default numbers" +
        (acc.static ? " (" + P().plural(acc.static, "call") + " to static numbers counted apart)" : "") })));
    head.appendChild(el("div", { "class": "figures" },
      D().figure("Visits", r.visits),
      r.bot_visits ? D().figure("Robot visits (left out)", r.bot_visits) : null,
      D().figure("Visitors shown a number", r.visitors_with_number),
      D().figure("Calls", calls.total), D().figure("Leads", r.leads), D().figure("Missed", (r.missed || {}).count),
      calls.spam ? D().figure("Spam (left out)", calls.spam) : null));
    var days = r.accuracy_by_day || [];
    head.appendChild(D().lineChart("accuracy_by_day", days.map(function (d) { return { label: d.day, value: d.ratio }; })));
    var counted = days.filter(function (d) { return d.counted; });
    if (counted.length) {
      head.appendChild(D().details("Accuracy by day", D().table(["Day", { text: "Tracked", num: 1 }, { text: "Counted", num: 1 }, { text: "Accuracy", num: 1 }],
        counted.map(function (d) { return [d.day, d.tracked, d.counted, D().fmtPercent(d.ratio)]; }))));
    }
    return head;
  }

  function sourcesSection(rows) {
    var el = D().el, src = D().section("by_source", "Calls and conversion by source", "wide");
    if (!rows.length) { src.appendChild(empty("No visits or calls from any source in this range.")); return src; }
    src.appendChild(el("div", { "class": "legend" }, el("span", null, el("i"), "calls"), el("span", null, el("i", { "class": "alt" }), "tracked calls")));
    src.appendChild(D().barChart("by_source", rows.map(function (s) {
      return { label: [s.source, s.medium, s.campaign].filter(Boolean).join(" / "), value: s.calls, value2: s.tracked_calls };
    }), { value2: true }));
    src.appendChild(D().table(["Source", "Medium", "Campaign", { text: "Visits", num: 1 }, { text: "Calls", num: 1 }, { text: "Tracked", num: 1 }, { text: "Conversion", num: 1 }],
      rows.map(function (s) { return [s.source, s.medium, s.campaign, s.visits, s.calls, s.tracked_calls, D().fmtPercent(s.conversion)]; })));
    return src;
  }

  /** Calls by kind and by status: one chart each, only the kinds and statuses that occurred. */
  function callsSection(calls) {
    var kinds = D().section("calls", "Calls by kind and status"), byKind = calls.by_kind || {}, byStatus = calls.by_status || {};
    var kindItems = KINDS.filter(function (k) { return byKind[k]; }).map(function (k) { return { label: k, value: byKind[k] }; });
    var statusItems = Object.keys(byStatus).filter(function (k) { return byStatus[k]; }).map(function (k) { return { label: k, value: byStatus[k] }; });
    if (!kindItems.length) { kinds.appendChild(empty("No calls in this range.")); return kinds; }
    kinds.appendChild(D().el("h3", { text: "By kind" }));
    kinds.appendChild(D().barChart("calls_by_kind", kindItems));
    kinds.appendChild(D().el("h3", { text: "By status" }));
    kinds.appendChild(D().barChart("calls_by_status", statusItems));
    return kinds;
  }

  function untrackedSection(u) {
    var el = D().el, un = D().section("untracked", "Calls to the default numbers"), ub = u.by_kind || {};
    var items = Object.keys(ub).filter(function (k) { return ub[k]; }).map(function (k) { return { label: k, value: ub[k] }; });
    if (!items.length) { un.appendChild(empty("No calls reached the default numbers in this range: every caller saw a tracked number.")); return un; }
    un.appendChild(D().barChart("untracked_by_kind", items));
    [["initial_delays_s", "the initial number", "since the visit began"],
      ["expired_delays_s", "the expired number", "since the number was taken back"]].forEach(function (h) {
      var buckets = (u[h[0]] || []).map(function (b) { return { label: b.label, value: b.calls }; });
      un.appendChild(el("h3", { text: "Calls to " + h[1] + ", by time " + h[2] }));
      if (!total(buckets)) { un.appendChild(empty("None matched to a visitor who saw " + h[1] + ".")); return; }
      // Only the span of buckets that hold calls: a row of empty buckets says nothing.
      var first = 0, last = buckets.length - 1;
      while (!buckets[first].value) first++;
      while (!buckets[last].value) last--;
      un.appendChild(D().barChart(h[0], buckets.slice(first, last + 1)));
    });
    return un;
  }

  function adviceSection(advice) {
    var el = D().el, adv = D().section("advice", "Advice");
    var specs = [["show_delay_s", "Show delay", sayS], ["idle_timeout_s", "Idle timeout", sayS],
      ["pool_size", "Pool size", function (n) { return P().plural(n, "number"); }]];
    specs.forEach(function (a) {
      var rec = advice[a[0]];
      if (!rec) return;
      var say = a[2];
      adv.appendChild(el("div", { "class": "advice" + (rec.changed ? " changed" : ""), "data-advice": a[0] },
        el("p", null, el("b", { text: a[1] + ": " }), rec.changed ? "change " + say(rec.current) + " → " + say(rec.value) : "keep " + say(rec.current)),
        el("p", { "class": "muted", text: P().capital(rec.reason) })));
    });
    return adv;
  }

  function poolSection(p) {
    var el = D().el, pool = D().section("pool", "Pool utilisation"), n = p.exhaustion_count || 0;
    pool.appendChild(D().barChart("pool", [{ label: "peak leased", value: p.peak_leased || 0 }, { label: "pool size", value: p.size || 0 }]));
    pool.appendChild(el("p", null, n ? "The pool ran out " + (n === 1 ? "once" : n + " times") +
      ": new visitors saw the untracked number then." : "The pool never ran out in this range."));
    return pool;
  }

  function leadsSection(months) {
    var leads = D().section("leads", "Leads per month");
    if (!months.some(function (m) { return m.leads; })) { leads.appendChild(empty("No leads in this range.")); return leads; }
    leads.appendChild(D().barChart("leads_by_month", months.map(function (m) { return { label: m.month, value: m.leads }; })));
    leads.appendChild(D().table(["Month", { text: "Leads", num: 1 }], months.map(function (m) { return [m.month, m.leads]; })));
    return leads;
  }

  function missedSection(m) {
    var el = D().el, missed = D().section("missed", "Missed calls"), count = m.count || 0;
    if (!count) { missed.appendChild(empty("No missed calls in this range.")); return missed; }
    missed.appendChild(el("p", null, el("b", { text: P().plural(count, "call") }), " ended before an answer."));
    missed.appendChild(el("ul", null, (m.ids || []).slice(0, 50).map(function (cid) {
      return el("li", null, el("a", { href: "/dashboard/calls/" + encodeURIComponent(cid), text: cid }));
    })));
    return missed;
  }

  window.CalltrackingPages = window.CalltrackingPages || {};
  window.CalltrackingPages.reports = reportsPage;
})();
