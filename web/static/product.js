/* Shared by the dashboard's page files (calls.js, overview.js, sitesetup.js, reports.js).
 *
 * Rules: times are shown in the account's time zone (named next to them), never the browser's;
 * a calendar day typed in a date field is a day in that zone; numbers are shown in their site's
 * display format (E.164 when it does not fit, like core/numbers.format_display). Values from the
 * API go into the page as text only. Page files register with `CalltrackingPages[page] = fn`
 * before dashboard.js starts the page, and reach its helpers through `CalltrackingDashboard`.
 */
(function () {
  "use strict";

  var pages = window.CalltrackingPages = window.CalltrackingPages || {};
  var P = window.CalltrackingProduct = {};
  function D() { return window.CalltrackingDashboard; }

  // ---- words -------------------------------------------------------------------------------------
  /** "1 call", "2 calls"; `many` defaults to `one` + "s". */
  P.plural = function (n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); };
  P.capital = function (text) { return text ? text.charAt(0).toUpperCase() + text.slice(1) : text; };

  // ---- time zones --------------------------------------------------------------------------------
  var formatters = {};
  function parts(ms, zone) {
    var key = zone || "UTC";
    if (!formatters[key]) {
      formatters[key] = new Intl.DateTimeFormat("en-GB", { timeZone: key, hourCycle: "h23",
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    }
    var out = {};
    formatters[key].formatToParts(new Date(ms)).forEach(function (p) { out[p.type] = p.value; });
    return out;
  }
  function zoneOffsetMs(ms, zone) {
    var p = parts(ms, zone);
    return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
  }
  /** "2026-03-10 12:00:05" in `zone`. */
  P.time = function (iso, zone) {
    if (!iso) return "–";
    var ms = Date.parse(iso);
    if (isNaN(ms)) return String(iso);
    var p = parts(ms, zone);
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + ":" + p.second;
  };
  /** "YYYY-MM-DD" of the instant `ms` in `zone`. */
  P.day = function (ms, zone) {
    var p = parts(ms, zone);
    return p.year + "-" + p.month + "-" + p.day;
  };
  /** The instant a calendar day begins in `zone` (plusDays moves the day), as ISO with offset. */
  P.dayStart = function (day, zone, plusDays) {
    var d = day.split("-");
    var wall = Date.UTC(+d[0], +d[1] - 1, +d[2] + (plusDays || 0));
    var guess = wall - zoneOffsetMs(wall, zone);
    var exact = wall - zoneOffsetMs(guess, zone); // right across a DST change
    return new Date(exact).toISOString().replace("Z", "+00:00");
  };
  P.shortZone = function (zone) { return (zone || "UTC").replace(/_/g, " "); };

  // ---- numbers -----------------------------------------------------------------------------------
  /** `e164` in the site's display format ("+7 (XXX) XXX-XX-XX"); E.164 when it does not fit. */
  P.number = function (e164, format) {
    if (!e164) return "";
    var digits = String(e164).replace(/^\+/, "");
    var m = /^\+(\d+)/.exec(format || "");
    var country = m ? m[1] : "";
    if (!format || !country || digits.indexOf(country) !== 0) return "+" + digits;
    var national = digits.slice(country.length), slots = (format.match(/X/g) || []).length;
    if (slots !== national.length) return "+" + digits;
    var i = 0;
    return format.replace(/X/g, function () { return national.charAt(i++); });
  };

  // ---- who is signed in, and the sites they see ---------------------------------------------------
  var contextPromise = null;
  /** {admin, account, sites, site(id), zoneOf(siteId), zone}: `zone` is the account's (or the only
   *  one the admin's accounts share; else UTC). */
  P.context = function () {
    if (contextPromise) return contextPromise;
    var api = D().api;
    contextPromise = Promise.all([api("GET", "/account"), api("GET", "/sites")]).then(function (r) {
      var me = r[0] || {}, sites = D().listOf(r[1], "sites");
      var accounts = me.account ? Promise.resolve([me.account]) :
        api("GET", "/accounts").then(function (a) { return D().listOf(a, "accounts"); }, function () { return []; });
      return accounts.then(function (list) {
        var zoneByAccount = {}, byId = {};
        list.forEach(function (a) { zoneByAccount[a.id] = a.timezone; });
        sites.forEach(function (s) { byId[s.id] = s; });
        var zones = Object.keys(zoneByAccount).map(function (k) { return zoneByAccount[k]; })
          .filter(function (z, i, all) { return all.indexOf(z) === i; });
        var ctx = {
          admin: !!me.admin, account: me.account || null, accounts: list, sites: sites,
          zone: me.account ? me.account.timezone : (zones.length === 1 ? zones[0] : "UTC"),
          site: function (id) { return byId[id] || null; },
          zoneOf: function (siteId) {
            var s = byId[siteId];
            return (s && zoneByAccount[s.account_id]) || ctx.zone;
          },
          numberFormat: function (siteId) {
            var s = byId[siteId];
            return s && s.settings ? s.settings.display_format : null;
          }
        };
        P.accountZone = ctx.zone;
        P.current = ctx;
        return ctx;
      });
    });
    return contextPromise;
  };

  // ---- server-sent events over fetch (so the same credentials as the API go with them) ------------
  /** Follow `path` (an /api/v1 event stream); `on[eventName](data)`; reconnects until `stop()`. */
  P.stream = function (path, on) {
    var stopped = false, controller = null, timer = 0;
    function dispatch(block) {
      var name = "message", data = "";
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event: ") === 0) name = line.slice(7);
        else if (line.indexOf("data: ") === 0) data += line.slice(6);
      });
      if (!on[name]) return;
      var value = null;
      try { value = data ? JSON.parse(data) : null; } catch (e) { return; }
      on[name](value);
    }
    function connect() {
      if (stopped) return;
      controller = new AbortController();
      var headers = { Accept: "text/event-stream" }; // the session cookie authorises it
      fetch("/api/v1" + path, { headers: headers, credentials: "same-origin", cache: "no-store", signal: controller.signal })
        .then(function (response) {
          if (!response.ok || !response.body) throw new Error("stream answered " + response.status);
          var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "";
          function pump() {
            return reader.read().then(function (chunk) {
              if (chunk.done) throw new Error("stream ended");
              buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
              var cut;
              while ((cut = buffer.indexOf("\n\n")) >= 0) {
                dispatch(buffer.slice(0, cut));
                buffer = buffer.slice(cut + 2);
              }
              return pump();
            });
          }
          return pump();
        })
        .catch(function () {
          if (on.down) on.down();
          if (!stopped) timer = setTimeout(connect, 3000);
        });
    }
    connect();
    return { stop: function () { stopped = true; clearTimeout(timer); if (controller) controller.abort(); } };
  };

  // ---- copy to clipboard -------------------------------------------------------------------------
  P.copyButton = function (source, label) {
    var button = D().el("button", { type: "button", "class": "small copy", text: label || "Copy" });
    button.addEventListener("click", function () {
      var text = source.textContent || source.value || "";
      var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = label || "Copy"; }, 2000); };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
      else fallback();
      function fallback() {
        var area = D().el("textarea", { "class": "offscreen" });
        area.value = text;
        document.body.appendChild(area);
        area.select();
        try { document.execCommand("copy"); done(); } catch (e) { button.textContent = "Select and copy"; }
        area.remove();
      }
    });
    return button;
  };

  P.register = function (page, fn) { pages[page] = fn; };
})();
