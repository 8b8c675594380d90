/*
 * jobpixel job-page tracker (served as /t.js). Readable source: build.mjs
 * minifies it to dist/t.js, which the Go package embeds. Plain ES5 on
 * purpose (the build targets es5, so newer syntax fails the build): it runs
 * in every browser a job seeker may use.
 *
 * Contract (README.md in this folder has the page-facing docs):
 *   - page_view on load; apply_click on [data-jobpixel="apply"];
 *     jobpixel('track', name, {em, v}) and jobpixel('consent', {...}).
 *   - Events wait in memory until consent is known (TCF CMP, Google Consent
 *     Mode "update", or jobpixel('consent')), or data-consent-timeout ms
 *     pass; then they are sent anonymously: no identifiers.
 *   - Nothing is written to cookies or storage without storage consent.
 *   - Batches go to POST /e with navigator.sendBeacon (text/plain JSON);
 *     when that is missing, throws or returns false, each event goes as a
 *     /p.gif pixel instead, with the same eid so a retry never counts twice.
 *   - No error ever leaves the script: every entry point is wrapped.
 */
(function (w, d) {
  'use strict';

  var EVENTS = { page_view: 1, apply_click: 1, application: 1, vacancy_email: 1 };
  var MODE_KEYS = ['ad_storage', 'analytics_storage', 'ad_user_data', 'ad_personalization'];
  var CONSENT_KEYS = ['measurement'].concat(MODE_KEYS);
  var CLICK_KEYS = ['gclid', 'gbraid', 'wbraid', 'li_fat_id'];
  var VID = '_jpx_vid'; // visitor id cookie: needs analytics storage consent
  var CLK = '_jpx_clk'; // click ids cookie: needs ad storage and ad consent
  var YEAR = 34128000; // 395 days, in seconds
  var CLICK_TTL = 7776000; // 90 days
  var BATCH = 50; // events per request (the server takes up to 100)
  var MAX_PIXEL_URL = 3800; // the server reads request lines up to 8 KiB

  // wrap returns f made safe to hand to the page or the browser: whatever
  // it throws stays here.
  function wrap(f) {
    return function () {
      try {
        return f.apply(this, arguments);
      } catch (e) {}
    };
  }

  function has(o, k) {
    return Object.prototype.hasOwnProperty.call(o, k);
  }

  function randomID() {
    var a = new Uint8Array(16), s = '', i, c = w.crypto || w.msCrypto;
    if (c && c.getRandomValues) c.getRandomValues(a);
    else for (i = 0; i < 16; i++) a[i] = Math.random() * 256;
    for (i = 0; i < 16; i++) s += (a[i] < 16 ? '0' : '') + a[i].toString(16);
    return s;
  }

  function decode(s) {
    try {
      return decodeURIComponent(s.replace(/\+/g, ' '));
    } catch (e) {
      return s;
    }
  }

  // params parses a query string ("?a=1&b=2" or "a=1&b=2").
  function params(q) {
    var o = {}, a = q.replace(/^\?/, '').split('&'), i, j;
    for (i = 0; i < a.length; i++) {
      j = a[i].indexOf('=');
      if (j > 0) o[decode(a[i].slice(0, j))] = decode(a[i].slice(j + 1));
    }
    return o;
  }

  function readCookies() {
    var o = {}, a, i, j;
    try {
      a = d.cookie ? d.cookie.split(/; */) : [];
    } catch (e) {
      return o; // sandboxed frames throw on document.cookie
    }
    for (i = 0; i < a.length; i++) {
      j = a[i].indexOf('=');
      if (j > 0) o[a[i].slice(0, j)] = a[i].slice(j + 1);
    }
    return o;
  }

  function writeCookie(name, value, maxAge) {
    try {
      d.cookie = name + '=' + value + '; Max-Age=' + maxAge + '; Path=/; SameSite=Lax' +
        (location.protocol === 'https:' ? '; Secure' : '');
    } catch (e) {}
  }

  function start() {
    var prev = w.jobpixel;
    if (prev && prev.loaded) return; // the snippet is on the page twice
    var script = d.currentScript || d.querySelector('script[data-campaign][src*="t.js"]');
    var campaign = script && script.getAttribute('data-campaign');
    if (!campaign) return;
    var src = script.src.split(/[?#]/)[0];
    var base = src.slice(0, src.lastIndexOf('/'));
    var vacancy = script.getAttribute('data-vacancy') || '';
    var wait = script.getAttribute('data-consent-timeout');
    wait = wait === null || wait === '' || isNaN(+wait) ? 3000 : Math.min(+wait, 2147483647);

    var t0 = new Date().getTime();
    var url = params(location.search);
    var queue = []; // events not yet sent, in memory only
    var state = 0; // 0: waiting for consent, 1: consent known, 2: timed out (send anonymously)
    var explicit = null; // jobpixel('consent', ...)
    var tcf = null; // {gdpr, tc, done, p: purpose consents, li: purpose legitimate interests}
    var tcfOn = false;
    var vid = null;
    var timer = 0;
    var images = [];

    // mode reads Google Consent Mode from dataLayer: the default and update
    // commands merged in order. s: the state, u: an update was seen (the
    // visitor decided), n: any key was found.
    function mode() {
      var out = { s: {}, u: false, n: false }, dl, i, k, a, v;
      try {
        dl = w.dataLayer;
        for (i = 0; dl && i < dl.length; i++) {
          a = dl[i];
          if (!a || a[0] !== 'consent' || !a[2] || typeof a[2] !== 'object') continue;
          for (k = 0; k < MODE_KEYS.length; k++) {
            v = a[2][MODE_KEYS[k]];
            if (v === 'granted' || v === 'denied') {
              out.s[MODE_KEYS[k]] = v;
              out.n = true;
            }
          }
          if (a[1] === 'update') out.u = true;
        }
      } catch (e) {} // a hostile dataLayer: keep what was read
      return out;
    }

    function listenTCF() {
      if (tcfOn || typeof w.__tcfapi !== 'function') return;
      tcfOn = true;
      wrap(w.__tcfapi)('addEventListener', 2, wrap(function (t, ok) {
        if (!ok || !t) return;
        var g = t.gdprApplies;
        tcf = tcf || {};
        tcf.gdpr = g === true ? '1' : g === false ? '0' : '';
        if (g === false || t.eventStatus === 'tcloaded' || t.eventStatus === 'useractioncomplete') {
          tcf.done = true;
          tcf.tc = t.tcString || '';
          tcf.p = (t.purpose && t.purpose.consents) || {};
          tcf.li = (t.purpose && t.purpose.legitimateInterests) || {};
          decide();
        }
      }));
    }

    // allowed answers one consent question the way the server does
    // (consent/PRECEDENCE.md): granted only when some source grants it and
    // none denies it. Sources: the page's jobpixel('consent') call, the TCF
    // CMP, Google Consent Mode. key is a Consent Mode key; TCF stands for it
    // with purposes that need consent (c) and purposes that need consent or
    // legitimate interest (l).
    function allowed(key, c, l) {
      var votes = [], i, m = mode().s, ex = explicit && (explicit[key] || (key === 'analytics_storage' && explicit.measurement));
      if (ex) votes.push(ex === 'granted');
      if (tcf && tcf.done && (tcf.tc || tcf.gdpr === '1')) {
        // A CMP without a TC string where GDPR applies has no consent.
        var ok = !!tcf.tc;
        for (i = 0; i < c.length; i++) ok = ok && !!tcf.p[c[i]];
        for (i = 0; i < l.length; i++) ok = ok && !!(tcf.p[l[i]] || tcf.li[l[i]]);
        votes.push(ok);
      }
      if (m[key]) votes.push(m[key] === 'granted');
      for (i = 0; i < votes.length; i++) if (!votes[i]) return false;
      return votes.length > 0;
    }

    // adsAllowed: identifiers may be read and sent (ad_user_data), never
    // under Global Privacy Control.
    function adsAllowed() {
      return w.navigator.globalPrivacyControl !== true && allowed('ad_user_data', [1], [7]);
    }

    // decide notes that consent became known; what waited goes out with
    // the next batch.
    function decide() {
      if (state !== 1 && (explicit || (tcf && tcf.done) || mode().u)) state = 1;
      schedule();
    }

    // identify returns the identifiers consent allows, writes the cookies it
    // allows, and removes our cookies it no longer allows.
    function identify() {
      var ids = {}, c = readCookies(), saved = {}, k, i, keep = '';
      if (allowed('analytics_storage', [1], [8])) {
        vid = vid || c[VID] || randomID();
        if (c[VID] !== vid) writeCookie(VID, vid, YEAR);
        ids.vid = vid;
      } else if (c[VID] || vid) {
        writeCookie(VID, '', 0);
        vid = null;
      }
      if (!adsAllowed()) {
        if (c[CLK]) writeCookie(CLK, '', 0);
        return ids;
      }
      if (c[CLK]) saved = params(decode(c[CLK]));
      for (i = 0; i < CLICK_KEYS.length; i++) {
        k = CLICK_KEYS[i];
        if (url[k] || saved[k]) ids[k] = url[k] || saved[k];
      }
      // fbc in Meta's _fbc format, fbclid verbatim; the time is when a page
      // first saw that fbclid.
      k = decode(saved.fbc || c._fbc || '');
      if (url.fbclid && k.slice(-url.fbclid.length - 1) !== '.' + url.fbclid) k = 'fb.1.' + t0 + '.' + url.fbclid;
      if (k) ids.fbc = k;
      if (c._fbp) ids.fbp = decode(c._fbp);
      if (allowed('ad_storage', [1], [])) {
        for (k in ids) if (has(ids, k) && k !== 'vid' && k !== 'fbp') keep += (keep ? '&' : '') + k + '=' + encodeURIComponent(ids[k]);
        if (keep && keep !== decode(c[CLK] || '')) writeCookie(CLK, encodeURIComponent(keep), CLICK_TTL);
      } else if (c[CLK]) {
        writeCookie(CLK, '', 0);
      }
      return ids;
    }

    // batch builds a POST /e body. Anonymous batches carry the consent
    // signals known so far but no identifier and no e-mail.
    function batch(events, anonymous) {
      var b = { c: campaign, events: events }, m = mode(), k, ids, ads = false, i;
      if (tcf && tcf.gdpr) b.gdpr = tcf.gdpr;
      if (tcf && tcf.tc) b.tcf = tcf.tc;
      if (m.n) b.consent_mode = m.s;
      if (explicit) b.consent = explicit;
      if (w.navigator.globalPrivacyControl === true) b.gpc = '1';
      if (!anonymous) {
        ids = identify();
        for (k in ids) if (has(ids, k)) b[k] = ids[k];
        ads = adsAllowed();
      }
      if (!ads) for (i = 0; i < events.length; i++) delete events[i].em;
      return b;
    }

    function pixel(b, ev) {
      var o = {}, k, q, all = [b, b.consent_mode || {}, ev], i;
      for (i = 0; i < all.length; i++) for (k in all[i]) if (has(all[i], k) && typeof all[i][k] === 'string') o[k] = all[i][k];
      // The explicit consent object travels flattened: consent_<field>.
      for (k in b.consent || {}) if (has(b.consent, k) && typeof b.consent[k] === 'string') o['consent_' + k] = b.consent[k];
      delete o.em; // never put an e-mail address in a URL
      function build() {
        q = [];
        for (k in o) if (has(o, k) && o[k] !== '') q.push(encodeURIComponent(k) + '=' + encodeURIComponent(o[k]));
        return base + '/p.gif?' + q.join('&');
      }
      q = build();
      if (q.length > MAX_PIXEL_URL) {
        delete o.tcf;
        delete o.r;
        q = build();
      }
      var img = new Image();
      images.push(img); // keep a reference until the request ends
      img.onload = img.onerror = wrap(function () {
        images.splice(images.indexOf(img), 1);
      });
      img.src = q;
    }

    function send(b) {
      var ok = false, i, body = JSON.stringify(b);
      try {
        ok = !!(w.navigator.sendBeacon && w.navigator.sendBeacon(base + '/e', body));
      } catch (e) {}
      if (!ok) for (i = 0; i < b.events.length; i++) pixel(b, b.events[i]);
    }

    // flush sends what is queued once consent is known or timed out; with
    // force (the page is going away) it sends anonymously regardless.
    function flush(force) {
      clearTimeout(timer);
      timer = 0;
      if (explicit && explicit.measurement === 'denied') {
        queue = [];
        return;
      }
      if (!queue.length || (!state && !force)) return;
      while (queue.length) send(batch(queue.splice(0, BATCH), state !== 1));
    }

    function schedule() {
      if (!timer && state && queue.length) timer = setTimeout(wrap(flush), 300);
    }

    function track(name, props) {
      if (!has(EVENTS, name)) return;
      props = props && typeof props === 'object' ? props : {};
      var ev = { e: name, eid: randomID(), u: location.href };
      if (d.referrer) ev.r = d.referrer;
      if (props.v || vacancy) ev.v = String(props.v || vacancy);
      if (props.em) ev.em = String(props.em); // sent only with ad consent; the server hashes it
      queue.push(ev);
      schedule();
    }

    function consent(c) {
      if (!c || typeof c !== 'object') return;
      var o = {}, i, k, v;
      for (i = 0; i < CONSENT_KEYS.length; i++) {
        k = CONSENT_KEYS[i];
        v = c[k];
        if (v === true || v === 'granted') o[k] = 'granted';
        else if (v === false || v === 'denied') o[k] = 'denied';
      }
      explicit = o;
      decide();
    }

    var api = wrap(function (cmd, a, b) {
      if (cmd === 'track') track(a, b);
      else if (cmd === 'consent') consent(a);
    });
    api.loaded = true;
    w.jobpixel = api;

    listenTCF();
    track('page_view');
    var early = prev && prev.q;
    if (early && early.length) for (var i = 0; i < early.length; i++) api.apply(null, early[i]);
    decide();

    setTimeout(wrap(function () {
      if (!state) {
        state = 2;
        flush(false);
      }
    }), wait);
    // A CMP or a Consent Mode update may come after this script.
    var poll = setInterval(wrap(function () {
      listenTCF();
      if (state !== 1 && mode().u) decide();
      if (state === 1 || new Date().getTime() - t0 > 60000) clearInterval(poll);
    }), 200);

    d.addEventListener('click', wrap(function (e) {
      for (var el = e.target; el && el.getAttribute; el = el.parentNode) {
        var kind = el.getAttribute('data-jobpixel');
        if (kind) {
          if (kind === 'apply') kind = 'apply_click';
          if (kind !== 'page_view') track(kind, { v: el.getAttribute('data-vacancy') });
          return;
        }
      }
    }), true);
    var leave = wrap(function () {
      flush(true);
    });
    w.addEventListener('pagehide', leave);
    d.addEventListener('visibilitychange', wrap(function () {
      if (d.visibilityState === 'hidden') leave();
    }));
  }

  try {
    start();
  } catch (e) {}
})(window, document);
