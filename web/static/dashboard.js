/* Operator dashboard: fills the server-rendered shells from the JSON API (/api/v1).
 *
 * Rules: signing in trades the pasted token for a session cookie (HttpOnly, SameSite=Strict: no
 * script sees it, every tab of this origin shares it; web/api/session.py). Pages call the API only
 * through `api(method, path, payload)`: it waits for the session, sends the session's CSRF token
 * with every method but GET, and turns a 401 into the sign-in page. `next` (where to go after
 * signing in) is only ever a path of this dashboard (safeNext). Values from the API are put in the
 * page as text (never as HTML). Charts are inline SVG drawn here, no library.
 */
(function () {
  "use strict";

  var API = "/api/v1";
  var csrf = ""; // this session's CSRF token, from GET/POST /api/v1/session
  var signedIn = null; // a promise of the session, set by start()
  var KINDS = ["dynamic", "held", "cooled", "static", "initial", "expired", "untracked",
    "unattributed", "unknown"];
  var body = document.body;

  // ---- small DOM helpers -------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = String(v);
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    });
  }
  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function flash(message) {
    var box = $("flash");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }
  function show(node, visible) { if (node) node.hidden = !visible; }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function fmtTime(iso) {
    if (!iso) return "–";
    var product = window.CalltrackingProduct; // the account's zone once known (product.js)
    if (product && product.accountZone) return product.time(iso, product.accountZone);
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function fmtSeconds(s) {
    if (s === null || s === undefined || isNaN(s)) return "–";
    s = Math.round(s);
    var m = Math.floor(s / 60);
    return m ? m + ":" + pad(s % 60) : s + " s";
  }
  function fmtPercent(ratio) {
    return ratio === null || ratio === undefined ? "–" : (Math.round(ratio * 1000) / 10) + "%";
  }
  function dateInput(d) { return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()); }
  /** A local calendar day ("YYYY-MM-DD") as an ISO instant; `plusDays` moves it (until is exclusive). */
  function dayToIso(day, plusDays) {
    var p = day.split("-");
    var d = new Date(+p[0], +p[1] - 1, +p[2] + (plusDays || 0));
    return d.toISOString().replace("Z", "+00:00");
  }
  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v !== "" && v !== null && v !== undefined) parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
    });
    return parts.length ? "?" + parts.join("&") : "";
  }
  function pageParams() {
    var out = {};
    new URLSearchParams(location.search).forEach(function (v, k) { out[k] = v; });
    return out;
  }

  // ---- the API -------------------------------------------------------------------------------
  function toLogin() {
    location.href = "/dashboard/login" + query({ next: location.pathname + location.search });
  }
  /** Where to go after signing in: a path of this dashboard, else the dashboard's start. Refused:
   * other origins and anything a browser could read as one (`//host`, `/\host`, `%5C`, schemes,
   * control characters), however encoded: the value is parsed as the browser would go there. */
  function safeNext(raw) {
    var home = "/dashboard/";
    if (typeof raw !== "string" || raw.charAt(0) !== "/" || /[\u0000-\u001f\u007f]/.test(raw)) return home;
    var path = raw.split(/[?#]/)[0]; // what decides where the browser goes
    if (/^\/[\/\\]|[\\\s]|%(5c|2f|00|0[9ad]|25)/i.test(path)) return home;
    var u;
    try { u = new URL(raw, location.origin); } catch (e) { return home; }
    if (u.origin !== location.origin) return home;
    if (u.pathname !== "/dashboard" && u.pathname.indexOf("/dashboard/") !== 0) return home;
    if (u.pathname.indexOf("/dashboard/login") === 0) return home;
    return u.pathname + u.search + u.hash;
  }

  function ApiError(status, code, message, field) {
    this.status = status; this.code = code; this.message = message; this.field = field;
  }
  ApiError.prototype.toString = function () { return this.message; };

  function request(method, path, payload) {
    var headers = { Accept: "application/json" };
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
    var init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(API + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (response.ok) return data;
        var err = (data && data.error) || {};
        var message = err.message || ("The server answered " + response.status);
        var field = err.field || null;
        if (!field && /^[\w.\[\]+-]+: /.test(message)) field = message.slice(0, message.indexOf(": "));
        throw new ApiError(response.status, err.code || "http_" + response.status, message, field);
      });
    }, function () {
      throw new ApiError(0, "network", "The tracker could not be reached.", null);
    });
  }
  /** The one way pages call the API: `api("GET", "/calls?...")`, `api("POST", "/sites", body)`. */
  function api(method, path, payload) {
    return (signedIn || Promise.resolve()).then(function () {
      return request(method, path, payload);
    }).catch(function (e) {
      if (e && e.status === 401 && body.dataset.page !== "login") {
        toLogin();
        return new Promise(function () {}); // the page is going away
      }
      throw e;
    });
  }
  function session() { // who is signed in; remembers the CSRF token
    return request("GET", "/session").then(function (me) { csrf = (me && me.csrf) || ""; return me; });
  }
  function failed(e) { flash(String(e && e.message ? e.message : e)); }

  function listOf(data, key) {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data[key])) return data[key];
    if (data && Array.isArray(data.items)) return data.items;
    return [];
  }
  function pick(obj) {
    for (var i = 1; i < arguments.length; i++) {
      if (obj && obj[arguments[i]] !== undefined && obj[arguments[i]] !== null) return obj[arguments[i]];
    }
    return null;
  }

  // ---- sign in ---------------------------------------------------------------------------------
  function loginPage() {
    var form = $("login-form"), error = $("login-error"), input = $("token");
    input.focus();
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var value = input.value.trim();
      show(error, false);
      input.removeAttribute("aria-invalid");
      if (!value) return refuse("Paste a token first.");
      request("POST", "/session", { token: value }).then(function () {
        location.href = safeNext(pageParams().next);
      }, function (e) {
        if (e.status === 401 || e.status === 403) refuse("This token was not accepted. Check it and try again.");
        else refuse("Could not sign in: " + e.message);
      });
    });
    function refuse(message) {
      error.textContent = message;
      show(error, true);
      input.setAttribute("aria-invalid", "true");
    }
  }

  // ---- sites -------------------------------------------------------------------------------------
  function sitesPage() {
    api("GET", "/sites").then(function (data) {
      var rows = listOf(data, "sites");
      var tbody = clear($("sites-body"));
      if (!rows.length) tbody.appendChild(el("tr", null, el("td", { colspan: 6, "class": "muted", text: "No sites yet." })));
      rows.forEach(function (site) {
        var s = site.settings || {};
        tbody.appendChild(el("tr", { "data-site": site.id },
          el("td", null, el("a", { href: "/dashboard/sites/" + encodeURIComponent(site.id), text: site.name })),
          el("td", { text: (site.domains || []).join(", ") }),
          el("td", null, el("code", { text: site.key || "" })),
          el("td", { "class": "num", text: s.show_delay_s !== undefined ? s.show_delay_s + " s" : "–" }),
          el("td", { "class": "num", text: s.pool_min !== undefined ? s.pool_min + "–" + s.pool_max : "–" }),
          el("td", null,
            el("a", { href: "/dashboard/sites/" + encodeURIComponent(site.id) + "/overview", text: "Overview" }), " · ",
            el("a", { href: "/dashboard/calls?site=" + encodeURIComponent(site.id), text: "Calls" }), " · ",
            el("a", { href: "/dashboard/sites/" + encodeURIComponent(site.id) + "/reports", text: "Reports" }))));
      });
    }, failed);
  }

  // ---- one site: settings and pool ---------------------------------------------------------
  var SIMPLE_KINDS = { "int": 1, "float": 1, "text": 1, "bool": 1, "lines": 1, "static": 1, "nullable": 1 };

  function sitePage() {
    var id = body.dataset.siteId, form = $("settings-form"), loaded = null;
    api("GET", "/sites/" + encodeURIComponent(id)).then(function (site) {
      loaded = site;
      fillSite(site);
    }, failed);
    loadPool(id);
    $("add-webhook").addEventListener("click", function () { addWebhook(null); });
    form.addEventListener("input", function () { show($("saved"), false); });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!loaded) return;
      clearErrors(form);
      var patch;
      try { patch = settingsPatch(loaded.settings || {}); } catch (e) { return fieldError(form, e.field, e.message); }
      if (!Object.keys(patch).length) { show($("saved"), true); $("saved").textContent = "Nothing changed"; return; }
      $("save-settings").disabled = true;
      api("PATCH", "/sites/" + encodeURIComponent(id), { settings: patch }).then(function (site) {
        loaded = site && site.settings ? site : loaded;
        if (site && site.settings) fillSite(site);
        $("saved").textContent = "Saved";
        show($("saved"), true);
        loadPool(id);
      }, function (e) {
        if (e.status === 422 || e.status === 400 || e.status === 409) fieldError(form, e.field, e.message);
        else failed(e);
      }).then(function () { $("save-settings").disabled = false; });
    });
  }

  function fillSite(site) {
    var s = site.settings || {};
    document.title = site.name + " · Call tracking";
    $("site-name").textContent = site.name + " (" + (site.domains || []).join(", ") + ")";
    formFields().forEach(function (input) {
      var key = input.dataset.field.slice("settings.".length), v = s[key];
      switch (input.dataset.kind) {
        case "bool": input.checked = !!v; break;
        case "lines": input.value = (v || []).join("\n"); break;
        case "static": input.value = Object.keys(v || {}).map(function (n) { return n + " " + v[n]; }).join("\n"); break;
        default: input.value = v === null || v === undefined ? "" : String(v);
      }
    });
    var a = s.analytics || {}, ga4 = a.ga4 || {}, ym = a.metrika || {};
    $("f-ga4-id").value = ga4.measurement_id || "";
    secretField($("f-ga4-secret"), ga4.api_secret);
    $("f-ym-id").value = ym.counter_id || "";
    secretField($("f-ym-token"), ym.token);
    $("f-ym-extended").checked = !!ym.extended_threshold;
    clear($("webhooks"));
    (a.webhooks || []).forEach(addWebhook);
    var defaults = clear($("defaults")), d = site.defaults || {};
    ["initial", "expired", "untracked"].forEach(function (k) {
      defaults.appendChild(el("dt", { text: k }));
      defaults.appendChild(el("dd", { text: d[k] || "–" }));
    });
    $("snippet").textContent = site.snippet ||
      '<script src="' + location.origin + '/snippet.js" data-site="' + (site.key || "") + '" async></script>';
  }
  function formFields() {
    return Array.prototype.filter.call($("settings-form").querySelectorAll("[data-kind]"), function (n) {
      return SIMPLE_KINDS[n.dataset.kind];
    });
  }
  function secretField(input, masked) {
    input.value = "";
    input.placeholder = masked ? masked + " (unchanged)" : "not set";
    input.dataset.masked = masked || "";
  }
  function addWebhook(hook) {
    var box = el("div", { "class": "webhook" });
    var n = $("webhooks").children.length;
    var base = "settings.analytics.webhooks[" + n + "]";
    box.appendChild(el("div", { "class": "field" }, el("label", { text: "URL" }),
      el("input", { "class": "wh-url", value: hook ? hook.url : "", placeholder: "https://", "data-field": base + ".url" })));
    box.appendChild(el("div", { "class": "field" }, el("label", { text: "Events (comma separated)" }),
      el("input", { "class": "wh-events", value: hook ? (hook.events || []).join(", ") : "call.ended", "data-field": base + ".events" })));
    var secret = el("input", { "class": "wh-secret", type: "password", autocomplete: "off", "data-field": base + ".secret" });
    secretField(secret, hook ? hook.secret : "");
    box.appendChild(el("div", { "class": "field" }, el("label", { text: "Secret" }), secret));
    box.appendChild(el("button", { type: "button", "class": "small", text: "Remove", onclick: function () { box.remove(); } }));
    $("webhooks").appendChild(box);
  }

  function FieldProblem(field, message) { this.field = field; this.message = message; }

  /** Only what differs from the loaded settings; secrets only when typed anew. */
  function settingsPatch(s) {
    var patch = {};
    formFields().forEach(function (input) {
      var key = input.dataset.field.slice("settings.".length), value;
      var raw = input.value.trim();
      switch (input.dataset.kind) {
        case "int":
          if (!/^\d+$/.test(raw)) {
            // Let the API judge anything that is not a plain whole number (it names the rule).
            value = raw === "" ? null : Number(raw);
            if (raw !== "" && isNaN(value)) throw new FieldProblem(input.dataset.field, "must be a whole number");
          } else value = parseInt(raw, 10);
          break;
        case "float":
          value = raw === "" ? null : Number(raw);
          if (raw !== "" && isNaN(value)) throw new FieldProblem(input.dataset.field, "must be a number");
          break;
        case "bool": value = input.checked; break;
        case "lines":
          value = raw ? raw.split(/\n+/).map(function (l) { return l.trim(); }).filter(Boolean) : null;
          break;
        case "static":
          value = {};
          raw.split(/\n+/).forEach(function (line) {
            line = line.trim();
            if (!line) return;
            var m = /^(\S+)\s+(.+)$/.exec(line);
            if (!m) throw new FieldProblem(input.dataset.field, "each line: a number, a space and its label");
            value[m[1]] = m[2].trim();
          });
          break;
        case "nullable": value = raw || null; break;
        default: value = input.value;
      }
      if (JSON.stringify(value) !== JSON.stringify(s[key] === undefined ? null : s[key])) patch[key] = value;
    });
    var analytics = analyticsPatch(s.analytics || {});
    if (analytics) patch.analytics = analytics;
    return patch;
  }
  function analyticsPatch(a) {
    var out = {}, changed = false;
    var ga4 = a.ga4 || null, gaId = $("f-ga4-id").value.trim(), gaSecret = $("f-ga4-secret").value.trim();
    if (!gaId && ga4) { out.ga4 = null; changed = true; } else if (gaId && (gaSecret || !ga4 || gaId !== ga4.measurement_id)) {
      if (!gaSecret) throw new FieldProblem("settings.analytics.ga4.api_secret", "enter the API secret to save this target");
      out.ga4 = { measurement_id: gaId, api_secret: gaSecret }; changed = true;
    }
    var ym = a.metrika || null, ymId = $("f-ym-id").value.trim(), ymToken = $("f-ym-token").value.trim();
    var ext = $("f-ym-extended").checked;
    if (!ymId && ym) { out.metrika = null; changed = true; } else if (ymId && (ymToken || !ym || ymId !== ym.counter_id || ext !== !!ym.extended_threshold)) {
      if (!ymToken) throw new FieldProblem("settings.analytics.metrika.token", "enter the OAuth token to save this target");
      out.metrika = { counter_id: ymId, token: ymToken, extended_threshold: ext }; changed = true;
    }
    var boxes = Array.prototype.slice.call($("webhooks").children);
    var hooks = boxes.map(function (box) {
      return {
        url: box.querySelector(".wh-url").value.trim(),
        events: box.querySelector(".wh-events").value.split(",").map(function (e) { return e.trim(); }).filter(Boolean),
        secret: box.querySelector(".wh-secret").value.trim(),
        input: box.querySelector(".wh-secret")
      };
    });
    var before = (a.webhooks || []).map(function (w) { return JSON.stringify([w.url, w.events]); }).join("|");
    var after = hooks.map(function (w) { return JSON.stringify([w.url, w.events]); }).join("|");
    if (before !== after || hooks.some(function (w) { return w.secret; })) {
      // The API replaces the list whole, so each webhook's secret must be given again.
      hooks.forEach(function (w) {
        if (!w.secret) throw new FieldProblem(w.input.dataset.field, "enter the secret again to save the webhooks");
      });
      out.webhooks = hooks.map(function (w) { return { url: w.url, events: w.events, secret: w.secret }; });
      changed = true;
    }
    return changed ? out : null;
  }

  function clearErrors(form) {
    Array.prototype.forEach.call(form.querySelectorAll(".field-error.dynamic"), function (n) { n.remove(); });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (n) { n.removeAttribute("aria-invalid"); });
    show(form.querySelector("#form-error, #review-error"), false);
  }
  /** Put the message next to the input the API's field names (or the closest parent field). */
  function fieldError(form, field, message) {
    var target = null, name = field || "";
    while (name && !target) {
      target = form.querySelector('[data-field="' + name.replace(/"/g, "") + '"]');
      if (!target) {
        var cut = Math.max(name.lastIndexOf("."), name.lastIndexOf("["));
        name = cut > 0 ? name.slice(0, cut) : "";
      }
    }
    var text = field && message.indexOf(field + ": ") === 0 ? message.slice(field.length + 2) : message;
    if (!target) {
      var box = form.querySelector("#form-error, #review-error");
      box.textContent = message;
      show(box, true);
      return;
    }
    target.setAttribute("aria-invalid", "true");
    var note = el("p", { "class": "field-error dynamic", role: "alert", text: text });
    var holder = target.closest(".field") || target.parentNode;
    holder.appendChild(note);
    target.focus();
  }

  // A number in its site's display format (E.164 when it does not fit, or before the
  // signed-in context is known); the E.164 form stays in the title.
  function fmtNumber(e164, siteId) {
    var P = window.CalltrackingProduct;
    if (!e164 || !P || !P.current) return e164 || "";
    return P.number(e164, P.current.numberFormat(siteId));
  }
  function numberCell(e164, siteId) {
    return el("span", { title: e164 || "", text: fmtNumber(e164, siteId) });
  }

  function loadPool(id) {
    api("GET", "/sites/" + encodeURIComponent(id) + "/pool").then(function (data) {
      var rows = listOf(data, "numbers");
      if (!rows.length) rows = listOf(data, "pool");
      var tbody = clear($("pool-body"));
      if (!rows.length) tbody.appendChild(el("tr", null, el("td", { colspan: 4, "class": "muted", text: "The pool is empty; numbers are added as visitors need them." })));
      rows.forEach(function (n) {
        var state = pick(n, "state") || "";
        tbody.appendChild(el("tr", { "data-number": pick(n, "e164", "number") },
          el("td", null, numberCell(pick(n, "e164", "number"), id)),
          el("td", null, el("span", { "class": "state state-" + state, text: state }), n.label ? " " + n.label : ""),
          el("td", { text: fmtTime(pick(n, "last_released_at", "released_at", "last_release", "last_release_at")) }),
          el("td", { text: pick(n, "visitor", "visitor_id") || "" })));
      });
    }, failed);
  }

  // ---- CSV: one rule for every export (calls.js uses it) ---------------------------------------
  function csvCell(v) {
    if (v === null || v === undefined) return "";
    var text = String(v);
    if (/^[=+\-@\t\r\n]/.test(text)) text = "'" + text;
    return /[",\n\r;]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  // ---- one call --------------------------------------------------------------------------------
  function callPage() {
    var id = body.dataset.callId, path = "/calls/" + encodeURIComponent(id), loaded = null;
    function load() {
      return api("GET", path).then(function (call) { loaded = call; renderCall(call, retry); }, failed);
    }
    function retry(target, button) {
      button.disabled = true;
      api("POST", path + "/exports/" + target + "/retry").then(load, failed);
    }
    $("review-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var form = $("review-form");
      clearErrors(form);
      api("PATCH", path, { spam: $("spam").checked, note: $("note").value }).then(function (call) {
        if (call && call.id) { loaded = call; renderCall(call, retry); }
        show($("review-saved"), true);
      }, function (e) { fieldError(form, e.field, e.message); });
    });
    $("review-form").addEventListener("input", function () { show($("review-saved"), false); });
    load().then(function () { if (loaded) renderRecording(loaded); });
  }

  function dl(node, pairs) {
    clear(node);
    pairs.forEach(function (p) {
      node.appendChild(el("dt", { text: p[0] }));
      node.appendChild(el("dd", { "data-key": p[2] || null }, p[1] === null || p[1] === undefined || p[1] === "" ? "–" : p[1]));
    });
  }
  function renderCall(c, retry) {
    var a = c.attribution || {}, s = a.session || {};
    $("call-title").textContent = "Call " + (fmtNumber(c.caller, c.site_id) || "anonymous") + " → " + fmtNumber(c.did, c.site_id);
    if (c.site_id) $("back-to-calls").href = "/dashboard/calls?site=" + encodeURIComponent(c.site_id);
    dl($("call-details"), [
      ["Number dialled", numberCell(c.did, c.site_id), "did"],
      ["Caller", c.caller ? numberCell(c.caller, c.site_id) : "anonymous", "caller"],
      ["Status", el("span", { "class": "state state-" + c.status, text: c.status }), "status"],
      ["Started", fmtTime(c.started_at), "started_at"], ["Answered", fmtTime(c.answered_at), "answered_at"],
      ["Ended", fmtTime(c.ended_at), "ended_at"], ["Duration", fmtSeconds(c.duration_s), "duration_s"],
      ["Talk", fmtSeconds(c.talk_s), "talk_s"], ["Answered by", c.answered_by, "answered_by"],
      ["Lead", c.lead ? "yes" : "no", "lead"], ["First-time caller", c.first_time_caller ? "yes" : "no"],
      ["Reconciled", c.reconciled ? "yes (closed without confirmation)" : "no"]
    ]);
    dl($("call-attribution"), [
      ["Kind", a.kind, "kind"],
      ["Confidence", a.confidence === null || a.confidence === undefined ? null : Math.round(a.confidence * 100) + "%", "confidence"],
      ["Label", a.label], ["Source", s.source, "source"], ["Medium", s.medium, "medium"],
      ["Campaign", s.campaign, "campaign"], ["Term", s.term], ["Content", s.content],
      ["Landing page", s.landing_url, "landing_url"], ["Referrer", s.referrer],
      ["Visit started", s.started_at ? fmtTime(s.started_at) : null], ["Visitor", a.visitor]
    ]);
    var list = clear($("call-exports")), exports = c.exports || {};
    Object.keys(exports).forEach(function (target) {
      var state = exports[target];
      var item = el("li", { "data-target": target }, el("b", { text: target === "ga4" ? "GA4" : target === "metrika" ? "Metrika" : target }),
        el("span", { "class": "state state-" + state, text: state }));
      if (state === "failed") {
        var button = el("button", { type: "button", "class": "small", text: "Retry" });
        button.addEventListener("click", function () { retry(target, button); });
        item.appendChild(button);
      }
      list.appendChild(item);
    });
    $("spam").checked = !!c.spam;
    if (c.note !== undefined && document.activeElement !== $("note")) $("note").value = c.note || "";
  }

  function renderRecording(c) {
    if (!c.recording_url) { show($("no-recording"), true); show($("player"), false); return; }
    show($("player"), true);
    var audio = $("audio"), url = c.recording_url;
    audio.src = url;
    $("rec-download").href = url;
    $("rec-download").setAttribute("download", "call-" + c.id + ".wav");
    audio.addEventListener("loadedmetadata", function () {
      if (isFinite(audio.duration)) $("rec-duration").textContent = fmtSeconds(audio.duration);
    });
    if (window.CalltrackingWaveform) {
      window.CalltrackingWaveform.attach($("waveform"), audio, url).then(function (info) {
        if (info && info.duration && $("rec-duration").textContent === "–") $("rec-duration").textContent = fmtSeconds(info.duration);
      }, function (e) {
        var note = $("rec-note");
        note.textContent = e && e.message ? e.message : "The waveform could not be drawn.";
        show(note, true);
      });
    }
  }

  // ---- charts (inline SVG) -----------------------------------------------------------------
  // Charts are drawn at the width they get (text stays legible on a phone); CSS only shrinks them.
  var chartSpace = 560;
  /** Horizontal bars, one row per item: [{label, value, value2?}]; scales to the widest value. */
  function barChart(name, items, opts) {
    opts = opts || {};
    var width = Math.min(560, chartSpace), labelW = width < 420 ? 110 : 150;
    var rowH = opts.value2 ? 30 : 22, chartW = width - labelW - 40;
    var height = Math.max(1, items.length) * rowH + 6;
    var max = Math.max.apply(null, [1].concat(items.map(function (i) { return Math.max(i.value || 0, i.value2 || 0); })));
    var root = svg("svg", { "class": "chart bar-chart", "data-chart": name, viewBox: "0 0 " + width + " " + height,
      width: width, height: height,
      role: "img", "aria-label": opts.title || name });
    if (!items.length) root.appendChild(svg("text", { x: 0, y: 14, text: "No data in this range" }));
    items.forEach(function (item, i) {
      var y = i * rowH + 3, h = opts.value2 ? 12 : 16;
      var room = Math.floor(labelW / 6.2), label = item.label.length > room ? item.label.slice(0, room - 1) + "…" : item.label;
      root.appendChild(svg("text", { x: labelW - 6, y: y + 12, "text-anchor": "end" }, svg("title", { text: item.label }), label));
      var w = Math.max(item.value ? 2 : 0, (item.value || 0) / max * chartW);
      root.appendChild(svg("rect", { "class": "bar", x: labelW, y: y, width: w.toFixed(1), height: h, rx: 2,
        "data-label": item.label, "data-value": item.value || 0 }));
      var text = opts.format ? opts.format(item) : String(item.value || 0);
      root.appendChild(svg("text", { x: labelW + w + 4, y: y + 12, text: text }));
      if (opts.value2) {
        var w2 = Math.max(item.value2 ? 2 : 0, (item.value2 || 0) / max * chartW);
        root.appendChild(svg("rect", { "class": "bar alt", x: labelW, y: y + h + 1, width: w2.toFixed(1), height: h, rx: 2,
          "data-label": item.label, "data-value": item.value2 || 0 }));
      }
    });
    return root;
  }
  /** A line over days with the ratio 0..1 (null days leave a gap); dots carry the values. */
  function lineChart(name, points) {
    var width = Math.min(800, chartSpace), height = 220, left = 36, bottom = 22, top = 8, right = 8;
    var plotW = width - left - right, plotH = height - top - bottom;
    var root = svg("svg", { "class": "chart line-chart", "data-chart": name, viewBox: "0 0 " + width + " " + height,
      width: width, height: height, role: "img", "aria-label": name });
    [0, 0.5, 1].forEach(function (t) {
      var y = top + plotH * (1 - t);
      root.appendChild(svg("line", { "class": "axis", x1: left, x2: width - right, y1: y, y2: y }));
      root.appendChild(svg("text", { x: left - 4, y: y + 4, "text-anchor": "end", text: Math.round(t * 100) + "%" }));
    });
    var n = points.length, step = n > 1 ? plotW / (n - 1) : 0, d = "", pen = false;
    points.forEach(function (p, i) {
      var x = left + (n > 1 ? i * step : plotW / 2);
      if (p.value === null || p.value === undefined) { pen = false; return; }
      var y = top + plotH * (1 - p.value);
      d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
      pen = true;
      root.appendChild(svg("circle", { "class": "point", cx: x.toFixed(1), cy: y.toFixed(1), r: 3,
        "data-label": p.label, "data-value": p.value }, svg("title", { text: p.label + ": " + fmtPercent(p.value) })));
    });
    if (d) root.appendChild(svg("path", { "class": "line", d: d.trim() }));
    var every = Math.max(1, Math.ceil(n / 7));
    points.forEach(function (p, i) {
      if (i % every && i !== n - 1) return;
      root.appendChild(svg("text", { x: left + (n > 1 ? i * step : plotW / 2), y: height - 6, "text-anchor": "middle", text: p.label.slice(5) }));
    });
    if (!points.some(function (p) { return p.value !== null && p.value !== undefined; })) {
      root.appendChild(svg("text", { x: left + 8, y: top + plotH / 2, text: "No calls counted in this range" }));
    }
    return root;
  }
  function table(headers, rows) {
    return el("div", { "class": "table-wrap" }, el("table", { "class": "data" },
      el("thead", null, el("tr", null, headers.map(function (h) { return el("th", { "class": h.num ? "num" : null, text: h.text || h }); }))),
      el("tbody", null, rows.map(function (r) {
        return el("tr", null, r.map(function (v, i) { return el("td", { "class": headers[i].num ? "num" : null }, v === null || v === undefined ? "–" : v); }));
      }))));
  }
  function section(name, title, cls) {
    return el("section", { "class": "card " + (cls || ""), "data-report": name }, el("h2", { text: title }));
  }

  // ---- reports: reports.js draws them with these helpers ----------------------------------------
  function figure(label, value) {
    return el("div", { "class": "figure" }, el("b", { text: value === undefined || value === null ? "–" : String(value) }), el("span", { "class": "muted", text: label }));
  }
  function details(summary, content) {
    return el("details", null, el("summary", { text: summary }), content);
  }

  // ---- start -------------------------------------------------------------------------------
  var PAGES = { login: loginPage, sites: sitesPage, site: sitePage, call: callPage };
  function start() {
    var page = body.dataset.page;
    var out = $("sign-out");
    if (out) out.addEventListener("click", function () {
      api("DELETE", "/session").then(null, function () { /* over already */ }).then(function () {
        location.href = "/dashboard/login";
      });
    });
    if (page === "login") {
      loginPage();
      // A tab opened on the sign-in page of a browser that is signed in goes straight on.
      session().then(function () { location.replace(safeNext(pageParams().next)); },
        function () { /* not signed in: the form it is */ });
      return;
    }
    signedIn = session();
    signedIn.then(function () {
      // Pages in their own files (calls.js, overview.js, ...) register in CalltrackingPages first.
      var run = (window.CalltrackingPages || {})[page] || PAGES[page];
      var product = window.CalltrackingProduct;
      // Who is signed in (and their time zone) first, so every time on the page is the account's.
      if (run && product) product.context().then(run, run);
      else if (run) run();
    }, function (e) {
      if (e && e.status === 401) toLogin(); else failed(e);
    });
  }
  window.CalltrackingDashboard = { barChart: barChart, lineChart: lineChart,
    // shared with the page files
    api: api, el: el, svg: svg, clear: clear, flash: flash, failed: failed, show: show,
    fmtSeconds: fmtSeconds, fmtPercent: fmtPercent, query: query, pageParams: pageParams,
    listOf: listOf, pick: pick, csvCell: csvCell, safeNext: safeNext, dl: dl, table: table, section: section,
    figure: figure, details: details, dateInput: dateInput, fieldError: fieldError,
    clearErrors: clearErrors, renderRecording: renderRecording, renderCall: renderCall,
    setChartSpace: function (width) { chartSpace = width; } };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
