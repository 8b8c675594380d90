// jobpixel client dashboard. No framework, no external resource.
//
// The client API token lives in the variable `token` below and nowhere else:
// it is sent only in the Authorization header of requests to this origin's
// API, and never written to a URL, a cookie, Web Storage or the page.
// Every value from the API is inserted with textContent (campaign names and
// traffic sources are other people's input), never parsed as HTML.
(function () {
  'use strict';

  var API = new URL('../api/v1/', document.baseURI).href;
  var COUNTS = ['page_views', 'apply_clicks', 'applications', 'vacancy_emails', 'visitors'];
  var DAY_MS = 24 * 60 * 60 * 1000;

  var token = null;     // the client API token, in memory only
  var campaigns = [];   // [{id, name, ...}] of the token's client
  var shown = null;     // the report on screen, for the CSV download
  var seq = 0;          // answers to superseded requests are ignored

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  var SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function showError(msg) {
    var e = $('error');
    e.textContent = msg;
    e.hidden = false;
  }

  function clearError() {
    $('error').textContent = '';
    $('error').hidden = true;
  }

  function status(msg) { $('status').textContent = msg; }

  // ApiError is a failed API call, with a message for people.
  function ApiError(status, msg) {
    this.status = status;
    this.message = msg;
  }

  // api GETs path under /api/v1/ with the token and returns the JSON answer,
  // or throws an ApiError.
  function api(path, tok) {
    return fetch(API + path, {
      method: 'GET',
      headers: { 'Authorization': 'Bearer ' + tok, 'Accept': 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
      referrerPolicy: 'no-referrer'
    }).then(function (res) {
      return res.text().then(function (text) {
        var body = null;
        try { body = JSON.parse(text); } catch (e) { /* reported below */ }
        var msg = body && typeof body.error === 'string' ? body.error : (res.statusText || 'no details');
        if (res.status === 401) {
          throw new ApiError(401, 'Token not accepted: check the client API token and try again.');
        }
        if (res.status >= 400 && res.status < 500) {
          throw new ApiError(res.status, 'The API refused the request (' + res.status + '): ' + msg);
        }
        if (!res.ok) {
          throw new ApiError(res.status, 'The API failed (' + res.status + '): ' + msg);
        }
        if (!body || typeof body !== 'object') {
          throw new ApiError(res.status, 'The API answered something that is not a report (not JSON).');
        }
        return body;
      });
    }, function () {
      throw new ApiError(0, 'Network error: the jobpixel API could not be reached. Check your connection and try again.');
    });
  }

  function message(err) {
    if (err instanceof ApiError) return err.message;
    return 'Unexpected error: ' + (err && err.message ? err.message : String(err));
  }

  // Dates are UTC days, as the API counts them.
  function isoDay(ms) { return new Date(ms).toISOString().slice(0, 10); }
  function dayMs(s) { return Date.parse(s + 'T00:00:00Z'); }
  var DAY = /^\d{4}-\d{2}-\d{2}$/;

  function defaultRange() {
    var to = Date.now();
    $('to').value = isoDay(to);
    $('from').value = isoDay(to - 29 * DAY_MS);
  }

  function num(v) {
    return typeof v === 'number' && isFinite(v) ? String(v) : '–';
  }

  function rate(n, d) {
    if (typeof n !== 'number' || typeof d !== 'number' || !(d > 0)) return '–';
    return (n / d * 100).toFixed(1) + '%';
  }

  // connect checks the token by listing the client's campaigns.
  function connect(ev) {
    ev.preventDefault();
    clearError();
    var input = $('token');
    var tok = input.value.trim();
    if (!tok) {
      showError('Enter your client API token.');
      return;
    }
    if (!/^[\x21-\x7e]+$/.test(tok)) {
      showError('That is not a jobpixel API token (it has spaces or other characters tokens never have).');
      return;
    }
    var my = ++seq;
    $('connect').disabled = true;
    status('Checking the token…');
    api('campaigns', tok).then(function (body) {
      if (my !== seq) return;
      if (!Array.isArray(body.campaigns)) throw new ApiError(200, 'The API answered something that is not a campaign list.');
      token = tok;
      input.value = '';
      campaigns = body.campaigns;
      $('token-form').hidden = true;
      $('signed-in').hidden = false;
      fillCampaigns();
      if (!$('from').value || !$('to').value) defaultRange();
      $('controls').hidden = false;
      if (campaigns.length === 0) {
        $('no-campaigns').hidden = false;
        status('');
        return;
      }
      return loadReport();
    }).catch(function (err) {
      if (my !== seq) return;
      status('');
      showError(message(err));
    }).then(function () {
      $('connect').disabled = false;
    });
  }

  function fillCampaigns() {
    var sel = $('campaign');
    clear(sel);
    campaigns.forEach(function (c) {
      var o = el('option', String(c.name));
      o.value = String(c.id);
      sel.appendChild(o);
    });
    $('no-campaigns').hidden = campaigns.length > 0;
    $('campaign').disabled = campaigns.length === 0;
    $('refresh').disabled = campaigns.length === 0;
  }

  function forget() {
    token = null;
    campaigns = [];
    shown = null;
    seq++;
    clear($('campaign'));
    $('controls').hidden = true;
    $('report').hidden = true;
    $('signed-in').hidden = true;
    $('token-form').hidden = false;
    clearError();
    status('');
    $('token').focus();
  }

  function loadReport(ev) {
    if (ev) ev.preventDefault();
    if (!token) return;
    clearError();
    var id = $('campaign').value;
    var from = $('from').value, to = $('to').value;
    if (!id) return;
    if (!DAY.test(from) || !DAY.test(to)) {
      showError('Choose a from and a to date.');
      return;
    }
    var camp = null;
    campaigns.forEach(function (c) { if (c.id === id) camp = c; });
    var my = ++seq;
    $('report').setAttribute('aria-busy', 'true');
    status('Loading the report…');
    return api('campaigns/' + encodeURIComponent(id) + '/report?from=' + encodeURIComponent(from) +
      '&to=' + encodeURIComponent(to), token).then(function (rep) {
      if (my !== seq) return;
      render(rep, camp);
      status('');
    }).catch(function (err) {
      if (my !== seq) return;
      $('report').removeAttribute('aria-busy');
      status('');
      if (err instanceof ApiError && err.status === 401) forget(); // revoked meanwhile
      showError(message(err));
    });
  }

  function countsRow(first, c) {
    var tr = el('tr');
    tr.appendChild(el('th', first)).setAttribute('scope', 'row');
    COUNTS.forEach(function (k) { tr.appendChild(el('td', num(c[k]), 'n')); });
    return tr;
  }

  function render(rep, camp) {
    var t = rep.totals || {};
    var days = Array.isArray(rep.days) ? rep.days : [];
    var sources = Array.isArray(rep.sources) ? rep.sources : [];
    $('report-title').textContent = camp ? String(camp.name) : String(rep.campaign);
    $('report-id').textContent = String(rep.campaign);
    $('report-range').textContent = String(rep.from) + ' to ' + String(rep.to);
    COUNTS.forEach(function (k) { $('t-' + k).textContent = num(t[k]); });
    $('t-bots').textContent = num(rep.bots);
    $('r-apply_clicks').textContent = rate(t.apply_clicks, t.page_views);
    $('r-applications').textContent = rate(t.applications, t.page_views);

    var tbody = $('days').tBodies[0];
    clear(tbody);
    days.forEach(function (d) { tbody.appendChild(countsRow(String(d.date), d)); });
    $('days').hidden = days.length === 0;
    $('days-empty').hidden = days.length > 0;
    chart(rep.from, rep.to, days);

    tbody = $('sources').tBodies[0];
    clear(tbody);
    sources.forEach(function (s) { tbody.appendChild(countsRow(String(s.source), s)); });
    $('sources').hidden = sources.length === 0;
    $('sources-empty').hidden = sources.length > 0;

    shown = { campaign: String(rep.campaign), from: String(rep.from), to: String(rep.to), days: days };
    var r = $('report');
    r.dataset.campaign = shown.campaign;
    r.dataset.from = shown.from;
    r.dataset.to = shown.to;
    r.removeAttribute('aria-busy');
    r.hidden = false;
  }

  // chart draws one bar per day of [from, to], page views with apply clicks
  // in front, as SVG built node by node.
  function chart(from, to, days) {
    var box = $('chart');
    clear(box);
    $('chart-from').textContent = '';
    $('chart-to').textContent = '';
    $('chart-max').textContent = '';
    var start = dayMs(from), end = dayMs(to);
    if (!(end >= start)) return;
    var n = Math.min(Math.round((end - start) / DAY_MS) + 1, 401);
    var byDate = {};
    var max = 0;
    days.forEach(function (d) {
      byDate[d.date] = d;
      max = Math.max(max, d.page_views || 0, d.apply_clicks || 0);
    });
    var W = 10, H = 100;
    var s = svg('svg', { viewBox: '0 0 ' + n * W + ' ' + H, preserveAspectRatio: 'none', role: 'img',
      'aria-label': 'Page views and apply clicks per day' });
    for (var i = 0; i < n; i++) {
      var date = isoDay(start + i * DAY_MS);
      var d = byDate[date];
      var g = svg('g', {});
      g.appendChild(svg('rect', { x: i * W, y: 0, width: W, height: H, 'class': 'slot' }));
      if (d && max > 0) {
        var pv = (d.page_views || 0) / max * H, ac = (d.apply_clicks || 0) / max * H;
        g.appendChild(svg('rect', { x: i * W + 1, y: H - pv, width: W - 2, height: pv, 'class': 'pv' }));
        g.appendChild(svg('rect', { x: i * W + 3, y: H - ac, width: W - 6, height: ac, 'class': 'ac' }));
      }
      var title = svg('title', {});
      title.textContent = date + ': ' + num(d ? d.page_views : 0) + ' page views, ' + num(d ? d.apply_clicks : 0) + ' apply clicks';
      g.appendChild(title);
      s.appendChild(g);
    }
    box.appendChild(s);
    $('chart-from').textContent = from;
    $('chart-to').textContent = isoDay(start + (n - 1) * DAY_MS);
    $('chart-max').textContent = max > 0 ? '(highest bar: ' + max + ')' : '';
  }

  function downloadCSV() {
    if (!shown) return;
    var lines = ['date,' + COUNTS.join(',')];
    shown.days.forEach(function (d) {
      lines.push([String(d.date)].concat(COUNTS.map(function (k) { return num(d[k]); })).join(','));
    });
    var blob = new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv;charset=utf-8' });
    var url = URL.createObjectURL(blob);
    var a = el('a');
    a.href = url;
    a.download = 'jobpixel-' + shown.campaign + '-' + shown.from + '-' + shown.to + '.csv';
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  function start() {
    defaultRange();
    $('token-form').addEventListener('submit', connect);
    $('range-form').addEventListener('submit', loadReport);
    $('campaign').addEventListener('change', function () { loadReport(); });
    $('from').addEventListener('change', function () { loadReport(); });
    $('to').addEventListener('change', function () { loadReport(); });
    $('forget').addEventListener('click', forget);
    $('csv').addEventListener('click', downloadCSV);
    $('token').focus();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
