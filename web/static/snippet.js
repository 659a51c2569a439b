/* Call-tracking snippet (CONTRACT.md, "Visitor websocket and site snippet").
 * Rules: it never throws into the host page (every entry point runs through guard); the HTML keeps
 * the site's own number, the snippet swaps the text and tel: link of marked elements and puts the
 * originals back when the server sends no number or the site is gone (close 4403/4404/4410); no
 * cookie is written while consent is required and not given. Tabs of a first visit opened at once
 * make one visitor: only one tab at a time goes "read cookie, hello, welcome writes ct_vid" (a Web
 * Lock named per site; a BroadcastChannel claim where locks are absent, e.g. plain-http pages), the
 * others wait and then read the cookie (from cookieStore where there is one, or handed over on the
 * channel). Without consent there is no cookie to share: each tab is its own visitor, as before.
 * With lease_on "interaction" (attribute or welcome) `want` goes after the first pointerdown,
 * scroll, keydown or touchstart; with "visible", once a phone element was on screen or clicked.
 * Script attributes: data-site (required), data-ga (GA4 measurement id), data-ym (Metrika counter),
 * data-consent="required", data-lease-on="visible"|"interaction", data-ws (socket URL; default:
 * the script's origin + /ws), data-activity-ms [15000], data-reconnect-ms [1000: back-off base,
 * cap 60x]. */
(function () {
  'use strict';
  var SEL = '[data-calltracking],.calltracking-phone';
  var ID = /^[\w.~-]{1,200}$/;
  function guard(fn) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { /* never break the host page */ }
    };
  }
  guard(function () {
    if (window.calltracking && window.calltracking.state) return; // pasted twice
    var script = document.currentScript ||
      document.querySelector('script[data-site][src*="snippet.js"]');
    var ds = (script && script.dataset) || {};
    if (!ds.site) return;
    var activityMs = ms(ds.activityMs, 15000), baseMs = ms(ds.reconnectMs, 1000) || 1000;
    var url = ds.ws || (function () {
      var u = new URL(script.src, location.href);
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      // The site in the query lets a proxy send a site's sockets to one node.
      u.pathname = '/ws'; u.search = '?site=' + encodeURIComponent(ds.site); u.hash = '';
      return u.href;
    })();
    var consentRequired = ds.consent === 'required';
    var consent = null; // null until the page calls calltracking.consent()
    var leaseVisible = ds.leaseOn === 'visible', leaseTouch = ds.leaseOn === 'interaction';
    var tab = rand();
    var st = { connected: false, kind: null, e164: null, display: null, visitor: null };
    var ws = null, greeted = false, attempt = 0, timer = null, stopped = false;
    var wanted = false, touched = false, wantSent = false, lastActivity = -Infinity;
    var recs = new WeakMap();
    var unlock = null, gone = false; // unlock ends this tab's turn at minting the visitor id
    var LOCK = 'calltracking-vid-' + ds.site;
    adopt();

    function adopt() {
      var vid = cookies().ct_vid;
      if (!st.visitor && vid && ID.test(vid)) st.visitor = vid;
    }
    function ms(v, d) { return v && +v >= 0 ? +v : d; }
    function rand() {
      var b = new Uint8Array(16);
      crypto.getRandomValues(b);
      return Array.prototype.map.call(b, function (x) { return (x | 256).toString(16).slice(1); }).join('');
    }
    function cookies() {
      var out = Object.create(null);
      document.cookie.split(/; */).forEach(function (p) {
        var i = p.indexOf('=');
        if (i > 0 && !(p.slice(0, i) in out)) out[p.slice(0, i)] = p.slice(i + 1);
      });
      return out;
    }
    function setVid(v, age) {
      document.cookie = 'ct_vid=' + v + '; max-age=' + age + '; path=/; SameSite=Lax' +
        (location.protocol === 'https:' ? '; Secure' : '');
    }
    function store() { // true when the cookie was written
      var ok = !!st.visitor && consent !== false && (consent || !consentRequired);
      if (ok) setVid(st.visitor, 31536000);
      return ok;
    }

    // Analytics ids: cookies are read at every hello; gtag/ym answers are awaited for 300 ms at most.
    function ask(call) {
      return new Promise(function (done) {
        try { call(guard(done)); } catch (e) { done(); }
      });
    }
    function collect() {
      var x = {}, jobs = [], g = window.gtag, y = window.ym;
      if (ds.ga && typeof g === 'function') {
        jobs.push(ask(function (cb) { g('get', ds.ga, 'client_id', cb); }).then(function (v) { x.cid = v; }));
        jobs.push(ask(function (cb) { g('get', ds.ga, 'session_id', cb); }).then(function (v) { x.sid = v; }));
      }
      if (ds.ym && typeof y === 'function') {
        jobs.push(ask(function (cb) { y(+ds.ym, 'getClientID', cb); }).then(function (v) { x.ym = v; }));
      }
      var late = new Promise(function (done) { setTimeout(done, 300); });
      return Promise.race([Promise.all(jobs), late]).then(function () { return x; });
    }
    function session(v) {
      var m = /^GS1\.\d+\.(\d+)/.exec(v || '') || /^GS2\.\d+\.(?:[^$]*\$)*s(\d+)/.exec(v || '');
      return m ? m[1] : null;
    }
    function str(v) { return v === undefined || v === null || v === '' ? null : String(v); }
    function hello(x) {
      var c = cookies(), gc = null;
      Object.keys(c).forEach(function (k) { if (k.indexOf('_ga_') === 0) (gc = gc || {})[k] = c[k]; });
      var sid = str(x.sid) || (ds.ga && gc ? session(gc['_ga_' + ds.ga.replace(/^G-/i, '')]) : null);
      var h = {
        type: 'hello', site: ds.site, visitor: st.visitor, tab: tab, url: location.href,
        referrer: document.referrer, ga: c._ga || (str(x.cid) ? 'GA1.1.' + x.cid : null),
        ga_session: sid, ga_cookies: gc, ym: str(x.ym) || c._ym_uid || null
      };
      // A browser driven by automation says so (WebDriver spec); such visitors get no number.
      if (navigator.webdriver === true) h.automation = true;
      return h;
    }

    // Phone elements: the original text node (or children) and tel: href are kept for restoring.
    function texts(el) {
      var w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT), n, out = [];
      while ((n = w.nextNode())) if (/\d/.test(n.data)) out.push(n);
      return out;
    }
    function remember(el, fights) {
      var a = el.closest('a'), href = a && a.getAttribute('href'), t = texts(el);
      var r = { a: /^tel:/i.test(href || '') ? a : null, href: href, on: false, fights: fights || 0 };
      if (t.length === 1) { r.node = t[0]; r.text = t[0].data; } else r.kids = Array.from(el.childNodes);
      recs.set(el, r);
      if (io && !wanted) io.observe(el);
      return r;
    }
    function padded(r) {
      var m = /^(\s*)[\s\S]*?(\s*)$/.exec(r.text);
      return m[1] + st.display + m[2];
    }
    function drifted(el, r) { // from what we showed, or from the original while not showing
      if (r.a && r.a.getAttribute('href') !== (r.on ? 'tel:' + st.e164 : r.href)) return true;
      if (r.kids) return r.on && el.textContent !== st.display;
      return !el.contains(r.node) || r.node.data !== (r.on ? padded(r) : r.text);
    }
    function show(el, fights) {
      var r = recs.get(el) || remember(el, fights);
      if (st.e164) {
        if (r.kids) { if (el.textContent !== st.display) el.textContent = st.display; }
        else if (r.node.data !== padded(r)) r.node.data = padded(r);
        if (r.a && r.a.getAttribute('href') !== 'tel:' + st.e164) r.a.setAttribute('href', 'tel:' + st.e164);
        r.on = true;
      } else if (r.on) {
        r.on = false;
        if (r.kids) { el.textContent = ''; r.kids.forEach(function (k) { el.appendChild(k); }); }
        else r.node.data = r.text;
        if (r.a) r.a.setAttribute('href', r.href);
      }
    }
    // Someone else (a framework re-rendering) rewrote a phone element: theirs is the new original.
    function check(el) {
      var r = el && recs.get(el);
      if (r && r.fights < 20 && drifted(el, r)) { recs.delete(el); show(el, r.fights + 1); }
      else if (el) show(el);
    }
    function scan(n) {
      if (n.nodeType !== 1) return;
      if (n.matches(SEL)) check(n);
      n.querySelectorAll(SEL).forEach(check);
    }
    function showAll() { document.querySelectorAll(SEL).forEach(function (el) { show(el); }); }

    var io = 'IntersectionObserver' in window ? new IntersectionObserver(guard(function (es) {
      es.forEach(function (e) { if (e.isIntersecting) want(); });
    })) : null;
    if (!io) wanted = true;
    function want() {
      wanted = true;
      if (io) io.disconnect();
      maybeWant();
    }
    function maybeWant() {
      if (!greeted || wantSent || !((wanted && leaseVisible) || (touched && leaseTouch))) return;
      wantSent = true;
      send({ type: 'want' });
    }

    function send(f) {
      if (ws && ws.readyState === 1) ws.send(JSON.stringify(f));
    }
    function onFrame(f) {
      if (!f || typeof f !== 'object') return;
      if (f.type === 'welcome') {
        attempt = 0;
        if (f.consent_required === true) consentRequired = true;
        if (f.lease_on === 'visible') leaseVisible = true;
        if (f.lease_on === 'interaction') leaseTouch = true;
        if (typeof f.visitor === 'string' && ID.test(f.visitor)) { st.visitor = f.visitor; kept = store(); }
        if (kept) settled(st.visitor); else release();
        maybeWant();
      } else if (f.type === 'number') {
        st.kind = str(f.kind);
        st.e164 = typeof f.e164 === 'string' && /^\+\d{8,15}$/.test(f.e164) ? f.e164 : null;
        st.display = st.e164 ? str(f.display) || st.e164 : null;
        showAll();
      }
    }
    // One tab at a time mints the visitor id (see the header). A tab that knows its visitor, from
    // its own welcome, the cookie or another tab, connects at once. A turn ends at the welcome, at
    // a close, at pagehide, or after 10 s whatever happens (then the next tab goes on its own).
    var chan = null, claims = null, leading = false, waiting = null, asking = null, kept = false;
    function first() {
      adopt();
      if (st.visitor || stopped) return connect();
      var locks = navigator.locks, began = false;
      if (locks && typeof locks.request === 'function') {
        locks.request(LOCK, guard(function () { began = true; return turn(); }))
          .catch(guard(function () { if (!began) connect(); })); // e.g. an opaque origin
      } else if (open()) claim();
      else connect();
    }
    function turn() { // the lock is ours: read the cookie again, hold the lock until the welcome
      var go = guard(function () {
        if (st.visitor || gone) { release(); if (!gone) connect(); return; }
        connect();
        if (!ws) release();
      });
      return new Promise(function (done) {
        unlock = done;
        setTimeout(guard(function () { if (unlock === done) release(); }), 10000);
        readVid(guard(function (v) {
          take(v);
          // Without cookieStore the last turn's cookie may not have reached this tab: ask the tabs.
          if (st.visitor || window.cookieStore || !open()) go(); else askTabs(go);
        }));
      });
    }
    function take(v) {
      if (st.visitor || typeof v !== 'string' || !ID.test(v)) return false;
      st.visitor = v;
      return true;
    }
    // The cookie store the tabs share lives in the browser: document.cookie writes reach it later,
    // with no reply. Where the page can ask it (cookieStore), the turn passes only once it shows
    // the new id, and the next tab reads it from there; elsewhere tabs hand the id over on `chan`.
    function readVid(then) {
      var cs = window.cookieStore;
      if (!cs) return then(cookies().ct_vid);
      cs.get('ct_vid').then(function (c) { then(c ? c.value : cookies().ct_vid); },
        function () { then(cookies().ct_vid); });
    }
    function settled(v) {
      var cs = window.cookieStore, tries = 0, pass = guard(function () { release(v); });
      if (!cs || !unlock) return pass();
      (function poll() {
        cs.get('ct_vid').then(function (c) {
          if ((c && c.value === v) || ++tries >= 50) pass(); else poll();
        }, pass);
      })();
    }
    function release(shared) { // `shared`: the id now in the cookie, handed to waiting tabs
      var u = unlock;
      unlock = null;
      if (u) u();
      if (leading) { leading = false; chan.postMessage({ t: 'done', vid: shared || null }); }
      else if (u && chan && shared) chan.postMessage({ t: 'done', vid: shared });
    }

    // The BroadcastChannel of this site's tabs. Messages: `claim` (I need the visitor id), `also`
    // (I am claiming too), `busy` (I lead: wait for my `done`), `done` {vid} (the id, or null when
    // the leader failed). A tab whose cookie holds the id answers every claim with `done`.
    // Without Web Locks, the lowest of the claims heard within CLAIM_MS leads. Messages can come
    // late on a busy machine, so two leaders may still mint two ids: tabs that hear of another id
    // than theirs agree on the smaller one (and say so), and the others switch to it.
    var CLAIM_MS = 250;
    function open() {
      if (!chan && typeof BroadcastChannel === 'function') {
        chan = new BroadcastChannel(LOCK);
        chan.onmessage = guard(heard);
      }
      return !!chan;
    }
    function askTabs(then) {
      asking = then;
      chan.postMessage({ t: 'claim', tab: tab });
      setTimeout(guard(function () { if (asking === then) { asking = null; then(); } }), CLAIM_MS);
    }
    function claim() {
      claims = [tab];
      chan.postMessage({ t: 'claim', tab: tab });
      setTimeout(guard(function () {
        if (!claims) return; // a leader, or a tab that knows the id, spoke
        var lead = claims.sort()[0] === tab;
        claims = null;
        adopt();
        if (st.visitor || gone) { if (!gone) connect(); return; }
        if (!lead) return wait();
        leading = true;
        chan.postMessage({ t: 'busy' });
        setTimeout(guard(function () { if (leading) release(); }), 10000);
        connect();
        if (!ws) release();
      }), CLAIM_MS);
    }
    function wait() {
      clearTimeout(waiting);
      waiting = setTimeout(guard(function () { waiting = null; if (!gone) connect(); }), 10000);
    }
    function heard(e) {
      var m = e.data || {};
      if (m.t === 'claim' || m.t === 'also') {
        if (claims && typeof m.tab === 'string') claims.push(m.tab);
        if (m.t !== 'claim') return;
        if (claims) chan.postMessage({ t: 'also', tab: tab });
        if (leading) chan.postMessage({ t: 'busy' });
        else if (kept && st.visitor) chan.postMessage({ t: 'done', vid: st.visitor });
      } else if (m.t === 'busy' && claims) {
        claims = null;
        wait();
      } else if (m.t === 'done' && (waiting || claims || asking)) {
        if (take(m.vid)) kept = store();
        var then = asking;
        clearTimeout(waiting);
        waiting = claims = asking = null;
        if (then) then(); else if (!gone) first();
      } else if (m.t === 'done' && kept && st.visitor && typeof m.vid === 'string' && ID.test(m.vid)) {
        if (m.vid < st.visitor) switchTo(m.vid);
        else if (m.vid !== st.visitor) chan.postMessage({ t: 'done', vid: st.visitor });
      }
    }
    function switchTo(v) {
      var s = ws;
      st.visitor = v;
      kept = store();
      chan.postMessage({ t: 'done', vid: v });
      ws = null; greeted = wantSent = st.connected = false;
      clearTimeout(timer); timer = null;
      if (s) s.close(1000);
      if (!gone) connect();
    }
    function connect() {
      timer = null;
      if (stopped || ws) return;
      var x = collect(), sock;
      try { sock = ws = new WebSocket(url); } catch (e) { stopped = true; return; } // bad URL, mixed content
      sock.onopen = guard(function () {
        st.connected = true;
        x.then(guard(function (v) {
          if (ws !== sock || sock.readyState !== 1) return;
          send(hello(v));
          greeted = true;
          if (document.visibilityState === 'hidden') send({ type: 'visibility', state: 'hidden' });
          maybeWant();
        }));
      });
      sock.onmessage = guard(function (e) { if (ws === sock) onFrame(JSON.parse(e.data)); });
      sock.onclose = guard(function (e) {
        if (ws !== sock) return;
        ws = null; greeted = wantSent = st.connected = false;
        release();
        if ([4403, 4404, 4410].indexOf(e.code) >= 0) { // permanent: show the site's own number
          stopped = true; st.kind = st.e164 = st.display = null; showAll(); return;
        }
        var d = Math.min(60 * baseMs, baseMs * Math.pow(2, attempt++));
        timer = setTimeout(guard(first), d / 2 + Math.random() * d / 2);
      });
    }
    function hang() {
      var s = ws;
      gone = true;
      ws = null; greeted = wantSent = st.connected = false;
      clearTimeout(timer); timer = null;
      release();
      if (s) s.close(1000);
    }

    window.calltracking = {
      consent: guard(function (granted) {
        consent = !!granted;
        kept = consent && store();
        if (!consent) setVid('', 0);
      }),
      state: guard(function () {
        return { connected: st.connected, kind: st.kind, e164: st.e164, display: st.display, visitor: st.visitor };
      })
    };
    var act = guard(function (e) {
      var t = e.target;
      if (e.type === 'click' && t && t.closest && t.closest(SEL)) want();
      if (e.type !== 'mousemove' && e.type !== 'click' && !touched) { touched = true; maybeWant(); }
      var now = Date.now();
      if (greeted && now - lastActivity >= activityMs) { lastActivity = now; send({ type: 'activity' }); }
    });
    ['mousemove', 'scroll', 'keydown', 'touchstart', 'click', 'pointerdown'].forEach(function (t) {
      window.addEventListener(t, act, { capture: true, passive: true });
    });
    document.addEventListener('visibilitychange', guard(function () {
      if (greeted) send({ type: 'visibility', state: document.visibilityState === 'hidden' ? 'hidden' : 'visible' });
    }));
    // Leave cleanly so the server ends this tab at once and the page may enter the back/forward cache.
    window.addEventListener('pagehide', guard(hang));
    window.addEventListener('pageshow', guard(function (e) { gone = false; if (e.persisted && !stopped) first(); }));
    new MutationObserver(guard(function (list) {
      list.forEach(function (m) {
        if (m.type === 'childList') m.addedNodes.forEach(scan);
        if (m.attributeName === 'href') scan(m.target); // a tel: link around phone elements
        var n = m.target.nodeType === 1 ? m.target : m.target.parentElement;
        check(n && n.closest(SEL));
      });
    })).observe(document.documentElement, {
      childList: true, subtree: true, characterData: true,
      attributes: true, attributeFilter: ['href', 'class', 'data-calltracking']
    });
    showAll();
    first();
  })();
})();
