/* Sites managed in the dashboard: a new site (/dashboard/sites/new), and on a site's page its name,
 * domains and default numbers, numbers added from the reserve, the snippet with a copy button,
 * and a "send a test event" button per analytics target. Everything goes through the operator
 * API (/api/v1/sites...); a refusal is shown at the field the API names.
 *
 * The site page's settings form and pool are dashboard.js's; this file adds its own cards and
 * starts them itself, so the two never wait on each other.
 */
(function () {
  "use strict";

  function D() { return window.CalltrackingDashboard; }
  function P() { return window.CalltrackingProduct; }
  function $(id) { return document.getElementById(id); }
  function lines(text) { return text.split(/\n+/).map(function (l) { return l.trim(); }).filter(Boolean); }

  /** The message next to the input whose data-field the API names (or in the form's error box). */
  function showError(form, box, e) {
    var target = null, name = e.field || "";
    while (name && !target) {
      target = form.querySelector('[data-field="' + name.replace(/"/g, "") + '"]');
      if (!target) {
        var cut = Math.max(name.lastIndexOf("."), name.lastIndexOf("["));
        name = cut > 0 ? name.slice(0, cut) : "";
      }
    }
    if (!target) { box.textContent = e.message; D().show(box, true); return; }
    var text = e.field && e.message.indexOf(e.field + ": ") === 0 ? e.message.slice(e.field.length + 2) : e.message;
    target.setAttribute("aria-invalid", "true");
    (target.closest(".field") || target.parentNode).appendChild(D().el("p", { "class": "field-error dynamic", role: "alert", text: text }));
    target.focus();
  }
  function clearErrors(form, box) {
    Array.prototype.forEach.call(form.querySelectorAll(".field-error.dynamic"), function (n) { n.remove(); });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (n) { n.removeAttribute("aria-invalid"); });
    D().show(box, false);
  }
  function statics(text) {
    var out = {};
    lines(text).forEach(function (line) {
      var m = /^(\S+)\s+(.+)$/.exec(line);
      if (m) out[m[1]] = m[2].trim(); else out[line] = "static";
    });
    return out;
  }
  function whole(id) {
    var raw = $(id).value.trim();
    return /^\d+$/.test(raw) ? parseInt(raw, 10) : raw === "" ? undefined : Number(raw);
  }

  // ---- a new site ---------------------------------------------------------------------------
  function newSitePage() {
    var form = $("new-site-form"), box = $("form-error");
    P().context().then(function (ctx) {
      if (!ctx.admin) return;
      var select = $("n-account");
      ctx.accounts.forEach(function (a) { select.appendChild(D().el("option", { value: a.id, text: a.name })); });
      D().show($("account-field"), true);
    }, D().failed);
    $("n-name").focus();
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearErrors(form, box);
      var settings = { pool_min: whole("n-pool_min"), pool_max: whole("n-pool_max"),
        display_format: $("n-display_format").value.trim() || undefined,
        channels: lines($("n-channels").value).length ? lines($("n-channels").value) : undefined,
        "static": lines($("n-static").value).length ? statics($("n-static").value) : undefined };
      Object.keys(settings).forEach(function (k) { if (settings[k] === undefined) delete settings[k]; });
      var payload = { name: $("n-name").value.trim(), domains: lines($("n-domains").value),
        defaults: { initial: $("n-initial").value.trim(), expired: $("n-expired").value.trim(), untracked: $("n-untracked").value.trim() },
        settings: settings };
      if (!$("account-field").hidden) payload.account_id = $("n-account").value;
      $("create-site").disabled = true;
      D().api("POST", "/sites", payload).then(function (site) {
        location.href = "/dashboard/sites/" + encodeURIComponent(site.id) + "?created=1";
      }, function (e) {
        $("create-site").disabled = false;
        showError(form, box, e);
      });
    });
  }

  // ---- a site's page: identity, numbers from the reserve, snippet, test events ----------------
  function siteExtras() {
    var id = document.body.dataset.siteId, path = "/sites/" + encodeURIComponent(id);
    $("copy-slot").appendChild(P().copyButton($("snippet"), "Copy snippet"));
    function load() {
      return D().api("GET", path).then(function (site) {
        $("s-name").value = site.name;
        $("s-domains").value = (site.domains || []).join("\n");
        ["initial", "expired", "untracked"].forEach(function (k) { $("s-" + k).value = (site.defaults || {})[k] || ""; });
        if (site.snippet) $("snippet").textContent = site.snippet;
        testTargets(id, (site.settings || {}).analytics || {});
      }, D().failed);
    }
    load();
    var identity = $("identity-form");
    identity.addEventListener("input", function () { D().show($("identity-saved"), false); });
    identity.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearErrors(identity, $("identity-error"));
      var payload = { name: $("s-name").value.trim(), domains: lines($("s-domains").value),
        defaults: { initial: $("s-initial").value.trim(), expired: $("s-expired").value.trim(), untracked: $("s-untracked").value.trim() } };
      D().api("PATCH", path, payload).then(function (site) {
        D().show($("identity-saved"), true);
        $("site-name").textContent = site.name + " (" + (site.domains || []).join(", ") + ")";
      }, function (e) { showError(identity, $("identity-error"), e); });
    });
    var numbers = $("add-numbers-form");
    numbers.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearErrors(numbers, $("numbers-error"));
      D().show($("numbers-added"), false);
      $("add-numbers").disabled = true;
      D().api("POST", path + "/numbers", { count: whole("add-count") }).then(function (r) {
        $("numbers-added").textContent = "Added " + P().plural((r.added || []).length, "number") + "; the pool has " + P().plural(r.pool_size, "number") + ".";
        D().show($("numbers-added"), true);
        // the pool table is dashboard.js's: a reload is the simplest honest refresh of it
        setTimeout(function () { location.reload(); }, 1200);
      }, function (e) { showError(numbers, $("numbers-error"), e); })
        .then(function () { $("add-numbers").disabled = false; });
    });
  }

  function testTargets(id, analytics) {
    var el = D().el, box = D().clear($("test-targets")), targets = [];
    if (analytics.ga4) targets.push({ target: "ga4", label: "GA4 " + analytics.ga4.measurement_id });
    if (analytics.metrika) targets.push({ target: "metrika", label: "Metrika counter " + analytics.metrika.counter_id });
    (analytics.webhooks || []).forEach(function (w, i) { targets.push({ target: "webhook", index: i, label: "Webhook " + w.url }); });
    if (!targets.length) { box.appendChild(el("p", { "class": "empty-state", text: "No analytics targets yet: add GA4, Metrika or a webhook in the settings." })); return; }
    targets.forEach(function (t) {
      var result = el("span", { "class": "test-result", role: "status" });
      var button = el("button", { type: "button", "class": "small", "data-target": t.target + (t.index !== undefined ? "-" + t.index : ""), text: "Send a test event" });
      button.addEventListener("click", function () {
        button.disabled = true;
        result.className = "test-result";
        result.textContent = "Sending…";
        var body = { target: t.target };
        if (t.index !== undefined) body.index = t.index;
        D().api("POST", "/sites/" + encodeURIComponent(id) + "/test-event", body).then(function (r) {
          result.className = "test-result " + (r.ok ? "ok" : "bad");
          result.textContent = (r.ok ? "Received: " : "Not received: ") + r.detail;
        }, function (e) {
          result.className = "test-result bad";
          result.textContent = e.message;
        }).then(function () { button.disabled = false; });
      });
      box.appendChild(el("div", { "class": "target-row" }, el("b", { text: t.label }), button, result));
    });
  }

  window.CalltrackingPages = window.CalltrackingPages || {};
  window.CalltrackingPages["site-new"] = newSitePage;
  // After every deferred script (dashboard.js included) has run: DOMContentLoaded comes then.
  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.page === "site") siteExtras();
  });
})();
