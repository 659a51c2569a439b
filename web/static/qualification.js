/* Call qualification in the dashboard: the account's tags and target-call rule (a card on the
 * sites page, for an account token), and the tags of one call (its page).
 *
 * Rules: tags are the account's (PUT /api/v1/qualification); a call can only carry defined tags
 * (PATCH /api/v1/calls/{id} with `tags`); the target-call flag is the server's verdict, shown as is.
 */
(function () {
  "use strict";

  function D() { return window.CalltrackingDashboard; }
  function $(id) { return document.getElementById(id); }

  function problem(box, e) { box.textContent = e.message; D().show(box, true); }

  function accountCard() {
    D().api("GET", "/account").then(function (me) {
      if (me.admin) return; // the admin has no account of its own to qualify calls for
      return D().api("GET", "/qualification").then(function (q) {
        $("q-tags").value = (q.tags || []).join("\n");
        $("q-target-talk").value = q.target_call_talk_s === null ? "" : String(q.target_call_talk_s);
        D().show($("qualification"), true); // only once filled: nothing typed is overwritten
      });
    }).catch(D().failed);
    var form = $("qualification-form");
    form.addEventListener("input", function () { D().show($("qualification-saved"), false); });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      D().show($("qualification-error"), false);
      var raw = $("q-target-talk").value.trim();
      var body = { tags: $("q-tags").value.split(/\n+/).map(function (t) { return t.trim(); }).filter(Boolean),
        target_call_talk_s: raw === "" ? null : Number(raw) };
      D().api("PUT", "/qualification", body).then(function (q) {
        $("q-tags").value = (q.tags || []).join("\n");
        D().show($("qualification-saved"), true);
      }, function (e) { problem($("qualification-error"), e); });
    });
  }

  function callTags() {
    window.CalltrackingProduct.context().then(function (ctx) {
      $("call-zone").textContent = "Times in " + window.CalltrackingProduct.shortZone(ctx.zone);
    }, function () {});
    var path = "/calls/" + encodeURIComponent(document.body.dataset.callId);
    Promise.all([D().api("GET", path), D().api("GET", "/qualification").catch(function () { return { tags: [] }; })])
      .then(function (r) { render(r[0], r[1].tags || []); }, D().failed);
    function render(call, defined) {
      var box = D().clear($("call-tags")), el = D().el;
      $("target-call").textContent = "Target call: " + (call.target_call === null || call.target_call === undefined ?
        "no rule set" : call.target_call ? "yes" : "no");
      var all = defined.slice();
      (call.tags || []).forEach(function (t) { if (all.indexOf(t) < 0) all.push(t); });
      if (!all.length) box.appendChild(el("span", { "class": "muted", text: "No tags defined yet: add them on the Sites page." }));
      all.forEach(function (t) {
        box.appendChild(el("label", { "class": "tag-choice" },
          el("input", { type: "checkbox", value: t, checked: (call.tags || []).indexOf(t) >= 0 }), " " + t));
      });
    }
    var form = $("tags-form");
    form.addEventListener("input", function () { D().show($("tags-saved"), false); });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      D().show($("tags-error"), false);
      var tags = Array.prototype.filter.call(form.querySelectorAll("input[type=checkbox]"), function (c) { return c.checked; })
        .map(function (c) { return c.value; });
      D().api("PATCH", path, { tags: tags }).then(function (call) {
        $("target-call").textContent = "Target call: " + (call.target_call === null ? "no rule set" : call.target_call ? "yes" : "no");
        D().show($("tags-saved"), true);
      }, function (e) { problem($("tags-error"), e); });
    });
  }

  // After every deferred script (dashboard.js included) has run: DOMContentLoaded comes then.
  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.dataset.page;
    if (page === "sites") accountCard();
    if (page === "call") callTags();
  });
})();
