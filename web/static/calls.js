/* The calls list: filters applied by the API over every page (with the total), a live feed of new
 * and ringing calls (server-sent events, same filters), inline play, a site column when every
 * site is shown, cards on a phone, numbers in the site's format, times in the account's zone.
 *
 * Rules: the first page follows the feed: a call that matches is put in its place (newest
 * first) or updated where it is; on later pages the feed only counts what is new, and a click
 * brings the operator back to the newest. The URL keeps the filters, so a link shares the view.
 */
(function () {
  "use strict";

  var FILTERS = ["site", "since", "until", "source", "medium", "campaign", "kind", "status",
    "number", "caller", "tag", "target", "text"];
  var PAGE_SIZE = 50;
  var CSV_COLUMNS = ["id", "site_id", "site", "started_at", "answered_at", "ended_at", "did", "caller", "status",
    "duration_s", "talk_s", "answered_by", "kind", "confidence", "source", "medium", "campaign", "term",
    "content", "landing_url", "lead", "target_call", "tags", "first_time_caller", "spam", "note", "ga4", "metrika"];

  function D() { return window.CalltrackingDashboard; }
  function P() { return window.CalltrackingProduct; }
  function $(id) { return document.getElementById(id); }

  function sourceOf(call) {
    var a = call.attribution || {}, s = a.session;
    if (s) return [s.source || "", s.medium || ""];
    if (a.label) return [a.label.split("/")[0], a.label.split("/")[1] || ""];
    return ["", ""];
  }

  function callsPage() {
    var params = D().pageParams(), ctx = null, cursors = [""], index = 0, current = [], total = 0;
    var feed = null, missed = 0;
    FILTERS.forEach(function (k) { if (params[k] && $("q-" + k)) $("q-" + k).value = params[k]; });

    function filters() {
      var f = {};
      FILTERS.forEach(function (k) { f[k] = $("q-" + k).value.trim(); });
      f.since = f.since ? P().dayStart(f.since, ctx.zone, 0) : "";
      f.until = f.until ? P().dayStart(f.until, ctx.zone, 1) : "";
      return f;
    }
    var loads = 0;
    function load() {
      $("page-info").textContent = "Loading…";
      var f = filters(), mine = ++loads;
      return D().api("GET", "/calls" + D().query(Object.assign({ limit: PAGE_SIZE, cursor: cursors[index] }, f))).then(function (data) {
        if (mine !== loads) return; // a later load is on its way: only the newest answer counts
        current = D().listOf(data, "calls");
        total = data && typeof data.total === "number" ? data.total : current.length;
        if (data && data.next) cursors[index + 1] = data.next; else cursors.length = index + 1;
        $("prev-page").disabled = index === 0;
        $("next-page").disabled = !(data && data.next);
        missed = 0;
        D().show($("new-calls"), false);
        render();
      }, D().failed);
    }
    function render() {
      renderCalls(current, ctx, !$("q-site").value, play);
      var first = index * PAGE_SIZE + (current.length ? 1 : 0), last = index * PAGE_SIZE + current.length;
      $("page-info").textContent = "Page " + (index + 1) + " · " + (current.length ? first + "–" + last + " of " : "") +
        P().plural(total, "call");
    }
    function follow() {
      if (feed) feed.stop();
      var f = filters();
      feed = P().stream("/calls/stream" + D().query(f), {
        ready: function () {
          D().show($("live-state"), true);
          // Calls may have come between the list's load and now (or while the stream was
          // down): load once more, and the feed carries on from here.
          load();
        },
        down: function () { D().show($("live-state"), false); },
        gap: function () { load(); },
        call: arrived
      });
    }
    function arrived(call) {
      var at = -1;
      current.forEach(function (c, i) { if (c.id === call.id) at = i; });
      if (at >= 0) { current[at] = call; render(); flashRow(call.id); return; }
      if (index > 0) {
        missed += 1;
        $("to-newest").textContent = P().plural(missed, "new call") + " · show the newest";
        D().show($("new-calls"), true);
        return;
      }
      current.push(call);
      current.sort(function (a, b) {
        return a.started_at === b.started_at ? (a.id < b.id ? 1 : -1) : (Date.parse(b.started_at) - Date.parse(a.started_at));
      });
      total += 1;
      if (current.length > PAGE_SIZE) { current.length = PAGE_SIZE; $("next-page").disabled = false; }
      render();
      flashRow(call.id);
    }
    function play(call, button) {
      var audio = $("inline-audio");
      if (audio.dataset.call === call.id && !audio.paused) { audio.pause(); return; }
      audio.dataset.call = call.id;
      audio.src = call.recording_url;
      $("playing-label").textContent = P().number(call.caller, ctx.numberFormat(call.site_id)) || "anonymous";
      D().show($("player-bar"), true);
      audio.play().catch(function () { /* the controls stay for a manual start */ });
      Array.prototype.forEach.call(document.querySelectorAll("button.play"), function (b) { b.classList.remove("playing"); });
      button.classList.add("playing");
    }
    function submit(ev) {
      if (ev) ev.preventDefault();
      cursors = [""]; index = 0;
      var p = {};
      FILTERS.forEach(function (k) { p[k] = $("q-" + k).value; });
      history.replaceState(null, "", location.pathname + D().query(p));
      $("calls-table").classList.toggle("all-sites", !$("q-site").value);
      load();
      follow();
    }

    P().context().then(function (c) {
      ctx = c;
      var select = $("q-site");
      ctx.sites.forEach(function (s) { select.appendChild(D().el("option", { value: s.id, text: s.name })); });
      if (params.site) select.value = params.site;
      $("th-time").textContent = "Started (" + P().shortZone(ctx.zone) + ")";
      $("zone-note").textContent = "Dates and times in " + P().shortZone(ctx.zone);
      return tagOptions().then(function () { submit(); });
    }).catch(D().failed);
    /** The account's tags as choices; a tag in the link stays chosen even if since undefined. */
    function tagOptions() {
      var select = $("q-tag");
      var asked = ctx.admin ? Promise.resolve({ tags: [] }) : D().api("GET", "/qualification").catch(function () { return { tags: [] }; });
      return asked.then(function (q) {
        var tags = (q.tags || []).slice();
        if (params.tag && tags.indexOf(params.tag) < 0) tags.push(params.tag);
        tags.forEach(function (t) { select.appendChild(D().el("option", { value: t, text: t })); });
        if (params.tag) select.value = params.tag;
      });
    }
    $("call-filters").addEventListener("submit", submit);
    $("refresh-calls").addEventListener("click", function () { load(); });
    $("to-newest").addEventListener("click", function () { index = 0; load(); });
    $("next-page").addEventListener("click", function () { index += 1; load(); });
    $("prev-page").addEventListener("click", function () { index = Math.max(0, index - 1); load(); });
    $("export-csv").addEventListener("click", function () { exportCsv(filters(), ctx); });
    $("close-player").addEventListener("click", function () {
      var audio = $("inline-audio");
      audio.pause();
      D().show($("player-bar"), false);
    });
    window.addEventListener("pagehide", function () { if (feed) feed.stop(); });
  }

  function flashRow(id) {
    var row = document.querySelector('#calls-body tr[data-call="' + id + '"]');
    if (row) row.classList.add("fresh");
  }

  function renderCalls(calls, ctx, allSites, play) {
    var el = D().el, tbody = D().clear($("calls-body"));
    if (!calls.length) tbody.appendChild(el("tr", null, el("td", { colspan: 12, "class": "muted empty", text: "No calls match." })));
    calls.forEach(function (c) {
      var a = c.attribution || {}, s = a.session || {}, sm = sourceOf(c), fmt = ctx.numberFormat(c.site_id);
      var site = ctx.site(c.site_id), href = "/dashboard/calls/" + encodeURIComponent(c.id);
      var rec = c.recording_url ? el("button", { type: "button", "class": "small play", "aria-label": "Play the recording", text: "▶",
        onclick: function (ev) { ev.stopPropagation(); play(c, ev.currentTarget); } }) : "";
      tbody.appendChild(el("tr", { "class": "link-row" + (c.status === "ringing" ? " ringing" : ""), "data-call": c.id, onclick: function (ev) {
        if (ev.target.tagName !== "A" && ev.target.tagName !== "BUTTON") location.href = href;
      } },
        el("td", { "data-label": "Started", "class": "when" }, el("a", { href: href, text: P().time(c.started_at, ctx.zone) })),
        el("td", { "data-label": "Site", "class": "col-site", text: site ? site.name : (c.site_id ? c.site_id : "–") }),
        el("td", { "data-label": "Number", title: c.did, text: P().number(c.did, fmt) }),
        el("td", { "data-label": "Caller", title: c.caller || "", text: c.caller ? P().number(c.caller, fmt) : "anonymous" }),
        el("td", { "data-label": "Status" }, el("span", { "class": "state state-" + c.status, text: c.status })),
        el("td", { "data-label": "Talk", "class": "num", text: D().fmtSeconds(c.talk_s) }),
        el("td", { "data-label": "Kind", text: a.kind || "" }),
        el("td", { "data-label": "Source", text: sm[0] ? sm[0] + " / " + sm[1] : "" }),
        el("td", { "data-label": "Campaign", "class": "clip", title: s.campaign || "", text: s.campaign || "" }),
        el("td", { "data-label": "Tags" }, (c.tags || []).map(function (t) { return el("span", { "class": "tag", text: t }); }),
          c.target_call ? el("span", { "class": "tag target", text: "target" }) : null),
        el("td", { "data-label": "Lead", text: c.lead ? "lead" : "" }),
        el("td", { "data-label": "Recording", "class": "rec" }, rec)));
    });
  }

  function csvRow(c, ctx) {
    var a = c.attribution || {}, s = a.session || {}, e = c.exports || {}, sm = sourceOf(c), site = ctx.site(c.site_id);
    return [c.id, c.site_id, site ? site.name : "", c.started_at, c.answered_at, c.ended_at, c.did, c.caller, c.status,
      c.duration_s, c.talk_s, c.answered_by, a.kind, a.confidence, sm[0], sm[1], s.campaign, s.term,
      s.content, s.landing_url, c.lead, c.target_call, (c.tags || []).join("; "), c.first_time_caller, c.spam, c.note,
      e.ga4, e.metrika];
  }
  /** Every call of the filters (pages of 500, at most 100 pages), saved as a CSV file. */
  function exportCsv(f, ctx) {
    var rows = [], pages = 0, button = $("export-csv");
    button.disabled = true;
    function next(cursor) {
      return D().api("GET", "/calls" + D().query(Object.assign({ limit: 500, cursor: cursor }, f))).then(function (data) {
        D().listOf(data, "calls").forEach(function (c) { rows.push(csvRow(c, ctx)); });
        pages += 1;
        if (data && data.next && pages < 100) return next(data.next);
      });
    }
    next("").then(function () {
      var cell = D().csvCell;
      var text = [CSV_COLUMNS].concat(rows).map(function (r) { return r.map(cell).join(","); }).join("\r\n") + "\r\n";
      var url = URL.createObjectURL(new Blob(["\ufeff" + text], { type: "text/csv;charset=utf-8" }));
      var link = D().el("a", { href: url, download: "calls-" + P().day(Date.now(), ctx.zone) + ".csv" });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    }, D().failed).then(function () { button.disabled = false; });
  }

  window.CalltrackingPages = window.CalltrackingPages || {};
  window.CalltrackingPages.calls = callsPage;
})();
