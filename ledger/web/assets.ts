// The fleet page's static assets, kept in code: the ledger serves them the same from its TypeScript
// sources, from `dist/` and from a one-file bundle, with no files to find at run time and nothing from a
// CDN. The scripts are small and plain (no framework, no build step); the server renders the HTML.

export const APP_CSS = String.raw`
:root { --ok: #1b7f3b; --amber: #b86e00; --red: #c0262d; --missed: #7a0f14; --ink: #1d232b; --muted: #5b6673;
  --line: #d7dde3; --bg: #f4f6f8; --card: #fff; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
* { box-sizing: border-box; }
html, body { margin: 0; padding: 0; background: var(--bg); color: var(--ink); }
body { font-size: 15px; line-height: 1.4; overflow-wrap: anywhere; }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 .5rem; }
h2 small { font-weight: normal; color: var(--muted); font-size: .8rem; display: block; }
h3 { font-size: .95rem; margin: .8rem 0 .4rem; }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; padding: .6rem 1rem;
  background: var(--ink); color: #fff; position: sticky; top: 0; z-index: 1; }
header.top .who { margin-left: auto; font-size: .9rem; }
.conn { font-size: .8rem; padding: .1rem .5rem; border-radius: 1rem; background: #555; }
.conn.live { background: var(--ok); }
.conn.down { background: var(--red); }
main { padding: 0 1rem 2rem; max-width: 1200px; margin: 0 auto; }
button { font: inherit; padding: .35rem .7rem; border: 1px solid var(--line); border-radius: .35rem; background: #fff;
  color: var(--ink); cursor: pointer; min-height: 2.2rem; }
button:disabled { opacity: .5; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 17rem), 1fr)); gap: .75rem; }
.card { background: var(--card); border: 1px solid var(--line); border-left: .5rem solid var(--ok); border-radius: .5rem;
  padding: .6rem .8rem; min-width: 0; }
.card header { display: flex; justify-content: space-between; align-items: center; gap: .5rem; }
.card h3 { margin: 0; }
.card.band-amber { border-left-color: var(--amber); background: #fff7e8; }
.card.band-red { border-left-color: var(--red); background: #fdecec; }
.card.band-missed { border-left-color: var(--missed); background: #f6d7d9; }
.card.offline.band-none, .card.offline.band-ok { border-left-color: var(--muted); }
.card dl { display: grid; grid-template-columns: 8.5rem minmax(0, 1fr); gap: .15rem .5rem; margin: .5rem 0 0; font-size: .9rem; }
.card dt { color: var(--muted); }
.card dd { margin: 0; min-width: 0; }
.card .band { display: block; font-size: .8rem; font-weight: 600; }
.band-amber .band { color: var(--amber); } .band-red .band, .band-missed .band { color: var(--red); }
.card small { display: block; color: var(--muted); }
.pill { font-size: .75rem; padding: .05rem .5rem; border-radius: 1rem; color: #fff; }
.pill.on { background: var(--ok); } .pill.off { background: var(--muted); }
.clock-drifting, .clock-untrusted { color: var(--red); font-weight: 600; }
.store-charts { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: .5rem .8rem; margin-bottom: .75rem;
  display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 28rem), 1fr)); gap: 0 1.2rem; }
.store-charts h3 { grid-column: 1 / -1; }
.store-charts figure { min-width: 0; }
figure { margin: .3rem 0 .8rem; }
figcaption { font-size: .85rem; color: var(--muted); }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .bar { fill: #3b6ea8; }
svg.chart .step { fill: none; stroke: var(--amber); stroke-width: 2; }
svg.chart .axis { stroke: var(--muted); } svg.chart .grid { stroke: var(--line); stroke-dasharray: 4 4; }
svg.chart .tick { font-size: 14px; fill: var(--muted); }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; width: 100%; background: var(--card); font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.oversold td { background: #fdecec; font-weight: 600; }
ul.exceptions { list-style: none; padding: 0; margin: 0; }
li.exception { background: var(--card); border: 1px solid var(--line); border-radius: .4rem; padding: .4rem .6rem; margin-bottom: .4rem;
  display: flex; flex-wrap: wrap; gap: .3rem .8rem; align-items: center; }
li.exception .what { flex: 1 1 14rem; min-width: 0; }
li.exception .meta { color: var(--muted); font-size: .8rem; }
li.exception .actions { display: flex; gap: .4rem; flex-wrap: wrap; }
.empty { color: var(--muted); font-style: italic; }
code.code { background: #eef1f4; padding: 0 .3rem; border-radius: .2rem; }
#receipt-form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; }
#receipt-form input { font: inherit; padding: .35rem; width: min(100%, 24rem); }
#receipt { margin-top: .75rem; }
#receipt img { max-width: 100%; height: auto; background: #fff; border: 1px solid var(--line); padding: .5rem; }
.error { color: var(--red); min-height: 1.2em; }
body.login main { display: flex; justify-content: center; padding-top: 12vh; }
.login-form { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: 1.2rem; width: min(100%, 22rem);
  display: flex; flex-direction: column; gap: .7rem; }
.login-form label { display: flex; flex-direction: column; gap: .2rem; }
.login-form input { font: inherit; padding: .45rem; }
@media (max-width: 480px) { main { padding: 0 .5rem 2rem; } .card dl { grid-template-columns: 7rem minmax(0, 1fr); } }
`;

/**
 * The page's script: listens to the live feed and fetches the live part again on each change; posts
 * resolutions with the session's CSRF token; shows a receipt as the ledger draws it. No template
 * literals below (this file holds it in one), no inline handlers (the page's CSP forbids them).
 */
export const APP_JS = String.raw`(function () {
  'use strict';
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
  var live = document.getElementById('live');
  var conn = document.getElementById('conn');
  var loading = false;
  var again = false;

  function toLogin() { window.location.href = '/fleet/login'; }

  function refresh() {
    if (loading) { again = true; return; }
    loading = true;
    fetch('/fleet/live', { credentials: 'same-origin', headers: { accept: 'text/html' } })
      .then(function (r) {
        if (r.status === 401) { toLogin(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (text === null) return;
        live.innerHTML = text;
        live.setAttribute('data-version', String(Number(live.getAttribute('data-version') || '0') + 1));
      })
      .catch(function () { /* the next change or reconnect fetches again */ })
      .then(function () {
        loading = false;
        if (again) { again = false; refresh(); }
      });
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify(body)
    });
  }

  function showReceipt(saleId) {
    var box = document.getElementById('receipt');
    var img = new Image();
    img.alt = 'Receipt of sale ' + saleId;
    img.id = 'receipt-img';
    img.setAttribute('data-sale', saleId);
    img.onerror = function () {
      var p = document.createElement('p');
      p.className = 'error';
      p.textContent = 'No receipt for sale ' + saleId + '.';
      box.replaceChildren(p);
    };
    img.src = '/fleet/receipts/' + encodeURIComponent(saleId);
    box.replaceChildren(img);
    document.getElementById('receipt-view').scrollIntoView();
  }

  document.addEventListener('click', function (ev) {
    var target = ev.target instanceof Element ? ev.target : null;
    if (!target) return;
    var resolve = target.closest('[data-resolve]');
    if (resolve) {
      ev.preventDefault();
      resolve.disabled = true;
      post('/api/exceptions/' + encodeURIComponent(resolve.getAttribute('data-resolve')) + '/resolve',
        { resolution: resolve.getAttribute('data-resolution') })
        .then(function (r) {
          if (r.status === 401) return toLogin();
          if (!r.ok) resolve.disabled = false;
          refresh();
        });
      return;
    }
    var receipt = target.closest('[data-receipt]');
    if (receipt) {
      ev.preventDefault();
      showReceipt(receipt.getAttribute('data-receipt'));
      return;
    }
    if (target.id === 'logout') post('/auth/logout', {}).then(toLogin, toLogin);
  });

  document.getElementById('receipt-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var id = ev.target.elements.sale.value.trim();
    if (id) showReceipt(id);
  });

  var events = new EventSource('/fleet/events');
  events.addEventListener('hello', function () {
    conn.textContent = 'live';
    conn.className = 'conn live';
    refresh();
  });
  events.addEventListener('change', refresh);
  events.onerror = function () {
    conn.textContent = 'reconnecting';
    conn.className = 'conn down';
  };
})();
`;

export const LOGIN_JS = String.raw`(function () {
  'use strict';
  var form = document.getElementById('login-form');
  var error = document.getElementById('login-error');
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    error.textContent = '';
    fetch('/auth/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: form.elements.name.value, password: form.elements.password.value })
    })
      .then(function (r) {
        if (r.ok) { window.location.href = '/fleet'; return; }
        return r.json().then(function (b) {
          error.textContent = (b && b.error && b.error.message) || 'Login failed';
        });
      })
      .catch(function () { error.textContent = 'The ledger does not answer'; });
  });
})();
`;

/** The tab's icon: a receipt, so browsers stop asking for a missing /favicon.ico. */
export const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M3 1h10v14l-2-1-2 1-2-1-2 1-2-1z" fill="#1d232b"/>' +
  '<path d="M5 5h6M5 8h6M5 11h4" stroke="#fff"/></svg>';
