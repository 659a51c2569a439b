/* The overview of an account (/dashboard/overview) or one site (/dashboard/sites/{id}/overview):
 * calls, tracked share, leads, missed calls and top sources for today / 7 / 30 days / a custom
 * range, each with its trend against the period before. Charts are inline SVG.
 *
 * Rules: presets and days are the account's (the API computes them); a custom range is days in
 * the account's zone, the last one included. A trend is shown only when it means something (the
 * API sends null from nothing); for missed calls a rise is bad news and coloured so.
 */
(function () {
  "use strict";

  var FIGURES = [
    ["calls", "Calls", false], ["tracked_share", "Tracked share", false], ["leads", "Leads", false],
    ["missed", "Missed calls", true], ["target_calls", "Target calls", false]
  ];
  function D() { return window.CalltrackingDashboard; }
  function P() { return window.CalltrackingProduct; }
  function $(id) { return document.getElementById(id); }

  function overviewPage() {
    var siteId = document.body.dataset.siteId, params = D().pageParams(), zone = "UTC";
    var current = { period: params.period || (params.since ? "" : "7d"), since: params.since || "", until: params.until || "" };
    if (current.since) $("o-since").value = current.since;
    if (current.until) $("o-until").value = current.until;
    P().context().then(function (ctx) {
      zone = siteId ? ctx.zoneOf(siteId) : ctx.zone;
      var site = siteId ? ctx.site(siteId) : null;
      $("overview-title").textContent = "Overview · " + (site ? site.name : (ctx.account ? ctx.account.name : "all accounts"));
      $("o-zone").textContent = "Days in " + P().shortZone(zone);
      load();
    }, D().failed);
    function load() {
      var q = { site: siteId || "" };
      if (current.period) q.period = current.period;
      else { q.since = P().dayStart(current.since, zone, 0); q.until = P().dayStart(current.until, zone, 1); }
      Array.prototype.forEach.call(document.querySelectorAll("[data-period]"), function (b) {
        b.setAttribute("aria-pressed", String(b.dataset.period === current.period));
      });
      history.replaceState(null, "", location.pathname + D().query(current.period ? { period: current.period } : { since: current.since, until: current.until }));
      D().api("GET", "/overview" + D().query(q)).then(render, D().failed);
    }
    Array.prototype.forEach.call(document.querySelectorAll("[data-period]"), function (b) {
      b.addEventListener("click", function () { current = { period: b.dataset.period, since: "", until: "" }; load(); });
    });
    $("overview-range").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var since = $("o-since").value, until = $("o-until").value;
      if (!since || !until) { D().flash("Pick both days of the range."); return; }
      if (until < since) { D().flash("The range ends before it begins."); return; }
      D().flash("");
      current = { period: "", since: since, until: until };
      load();
    });
  }

  function value(key, figures) {
    var v = figures[key];
    if (v === null || v === undefined) return "–";
    return key === "tracked_share" ? D().fmtPercent(v) : String(v);
  }
  function trendText(change, bad) {
    if (change === null || change === undefined) return { text: "no earlier figure", cls: "flat" };
    if (change === 0) return { text: "same as before", cls: "flat" };
    var pct = Math.round(Math.abs(change) * 1000) / 10;
    return { text: (change > 0 ? "▲ " : "▼ ") + pct + "% vs previous", cls: (change > 0 ? "up" : "down") + (bad ? " bad" : "") };
  }

  function render(o) {
    var el = D().el, f = o.figures || {}, prev = o.previous_figures || {}, trend = o.trend || {};
    var kpis = D().clear($("kpis"));
    FIGURES.forEach(function (spec) {
      if (spec[0] === "target_calls" && f.target_calls === null) return; // no rule: no figure
      var t = trendText(trend[spec[0]], spec[2]);
      kpis.appendChild(el("div", { "class": "kpi", "data-figure": spec[0] },
        el("span", { "class": "label", text: spec[1] }),
        el("b", { text: value(spec[0], f) }),
        el("span", { "class": "trend " + t.cls, text: t.text })));
    });
    var days = o.per_day || [], before = o.previous_per_day || [];
    var box = D().clear($("o-days"));
    if (!f.calls && !prev.calls) box.appendChild(el("p", { "class": "empty-state", text: "No calls in this period or the one before." }));
    else box.appendChild(dayChart(days, before));
    var sources = D().clear($("o-sources")), top = o.top_sources || [];
    if (!top.length) sources.appendChild(el("p", { "class": "empty-state", text: "No calls, so no sources yet." }));
    else {
      sources.appendChild(D().barChart("top_sources", top.map(function (s) { return { label: s.source, value: s.calls }; }), { title: "Calls by source" }));
      sources.appendChild(D().table(["Source", { text: "Before", num: 1 }, { text: "Now", num: 1 }, "Trend"],
        top.map(function (s) {
          var t = trendText(s.trend, false);
          return [s.source, s.previous_calls, s.calls, el("span", { "class": "trend " + t.cls, text: t.text.replace(" vs previous", "") })];
        })));
    }
    var compare = D().clear($("o-compare"));
    compare.appendChild(el("p", { "class": "muted", text: "This period, " + span(o.period, o.timezone) +
      ", against the one before, " + span(o.previous, o.timezone) + "." }));
    compare.appendChild(D().table(["Figure", { text: "Before", num: 1 }, { text: "Now", num: 1 }],
      FIGURES.filter(function (s) { return s[0] !== "target_calls" || f.target_calls !== null; })
        .map(function (s) { return [s[1], value(s[0], prev), value(s[0], f)]; })));
  }

  /** "2026-03-01 – 2026-03-07": the local days of [since, until). */
  function span(w, zone) {
    var last = new Date(Date.parse(w.until) - 1000).toISOString();
    return P().time(w.since, zone).slice(0, 10) + " – " + P().time(last, zone).slice(0, 10);
  }

  /** Columns per day for this period, a line for the period before (aligned day by day). */
  function dayChart(days, before) {
    var svg = D().svg, width = 760, height = 200, left = 30, bottom = 22, top = 8;
    var plotW = width - left - 8, plotH = height - top - bottom, n = Math.max(1, days.length);
    var max = Math.max.apply(null, [1].concat(days.map(function (d) { return d.calls; }), before.map(function (d) { return d.calls; })));
    var root = svg("svg", { "class": "chart day-chart", "data-chart": "per_day", viewBox: "0 0 " + width + " " + height,
      width: width, height: height, role: "img", "aria-label": "Calls per day, this period against the previous" });
    [0, 0.5, 1].forEach(function (t) {
      var y = top + plotH * (1 - t);
      root.appendChild(svg("line", { "class": "axis", x1: left, x2: width - 8, y1: y, y2: y }));
      root.appendChild(svg("text", { x: left - 4, y: y + 4, "text-anchor": "end", text: String(Math.round(max * t)) }));
    });
    var step = plotW / n, barW = Math.max(2, step * 0.6), line = "";
    days.forEach(function (d, i) {
      var h = d.calls / max * plotH, x = left + i * step + (step - barW) / 2;
      root.appendChild(svg("rect", { "class": "bar", x: x.toFixed(1), y: (top + plotH - h).toFixed(1), width: barW.toFixed(1),
        height: h.toFixed(1), "data-label": d.day, "data-value": d.calls }, svg("title", { text: d.day + ": " + P().plural(d.calls, "call") })));
      var b = before[i];
      if (b) line += (line ? "L" : "M") + (left + i * step + step / 2).toFixed(1) + " " + (top + plotH - b.calls / max * plotH).toFixed(1) + " ";
    });
    if (line) root.appendChild(svg("path", { "class": "line previous", d: line.trim() }));
    var every = Math.max(1, Math.ceil(n / 8));
    days.forEach(function (d, i) {
      if (i % every && i !== n - 1) return;
      root.appendChild(svg("text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle", text: d.day.slice(5) }));
    });
    return D().el("div", null, root, D().el("div", { "class": "legend" },
      D().el("span", null, D().el("i"), "this period"), D().el("span", null, D().el("i", { "class": "line-key" }), "previous period")));
  }

  window.CalltrackingPages = window.CalltrackingPages || {};
  window.CalltrackingPages.overview = overviewPage;
  window.CalltrackingPages["site-overview"] = overviewPage;
})();
