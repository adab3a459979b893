// The fleet page as server-rendered HTML: the frame (header, receipt viewer) once, and the live part
// (register cards, charts, stock and oversells, alarms, recent sales) again whenever the page is told
// something changed. Buttons that change things appear for admins only (the API refuses viewers anyway).
import { formatMinor } from '../../appliance/till/money.js';
import type { DeviceCard, FleetException, LagSeries, SalesSeries } from '../fleet/overview.js';
import { FLEET_DEFAULTS } from '../fleet/overview.js';
import type { SaleSummary, StockLevel } from '../queries.js';
import { barChart, stepChart } from './charts.js';
import { html, type SafeHtml } from './html.js';

export interface LiveView {
  nowMs: number;
  deadlineMs: number;
  role: 'admin' | 'viewer';
  devices: DeviceCard[];
  sales: SalesSeries[];
  lag: LagSeries[];
  stock: StockLevel[];
  exceptions: {
    oversells: FleetException[];
    quarantine: FleetException[];
    alarms: FleetException[];
    safDeclines: FleetException[];
  };
  recentSales: SaleSummary[];
}

/** "2026-01-01 14:05 UTC": one zone for every store on one screen. */
export function when(ms: number | null): string {
  if (ms === null) return '—';
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** "3 d 4 h", "13 h 05 min", "4 min", "12 s". */
export function age(ms: number | null): string {
  if (ms === null) return '—';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

const BAND_TEXT: Record<DeviceCard['deadline'], string> = {
  none: 'nothing waiting',
  ok: 'within deadline',
  amber: 'half the forwarding time gone',
  red: 'forwarding deadline close',
  missed: 'forwarding deadline missed',
};

const CLOCK_TEXT: Record<DeviceCard['clock'], string> = {
  trusted: 'clock trusted',
  untrusted: 'clock not synchronised',
  drifting: 'clock drifting',
  unknown: 'clock unknown',
};

function deviceCard(d: DeviceCard): SafeHtml {
  const skew =
    d.clock === 'drifting' && d.clockSkewMs !== null
      ? ` (${d.clockSkewMs > 0 ? '+' : '−'}${age(Math.abs(d.clockSkewMs))})`
      : '';
  return html`<article
    class="card band-${d.deadline} ${d.online ? 'online' : 'offline'}"
    data-device="${d.deviceId}"
    data-deadline="${d.deadline}"
    data-online="${String(d.online)}"
  >
    <header>
      <h3>${d.deviceId}</h3>
      <span class="pill ${d.online ? 'on' : 'off'}">${d.online ? 'online' : 'offline'}</span>
    </header>
    <dl>
      <dt>Store</dt>
      <dd>${d.storeId ?? '—'}</dd>
      <dt>Last seen</dt>
      <dd>${when(d.lastSeen)}</dd>
      <dt>Pending</dt>
      <dd class="pending">${d.pending ?? '—'}</dd>
      <dt>Oldest pending</dt>
      <dd class="age">
        ${age(d.oldestPendingAgeMs)}<span class="band">${BAND_TEXT[d.deadline]}</span
        >${d.deadlineAt !== null ? html`<small>deadline ${when(d.deadlineAt)}</small>` : ''}
      </dd>
      <dt>Last Z</dt>
      <dd>${d.lastZ ? html`No. ${d.lastZ.zNo}, ${when(d.lastZ.closedAt)}` : '—'}</dd>
      <dt>Clock</dt>
      <dd class="clock clock-${d.clock}">${CLOCK_TEXT[d.clock]}${skew}</dd>
      <dt>Version</dt>
      <dd>${d.version ?? '—'}</dd>
    </dl>
  </article>`;
}

function resolveButtons(e: FleetException, role: LiveView['role'], choices: [string, string][]): SafeHtml {
  if (role !== 'admin') return html``;
  return html`<span class="actions"
    >${choices.map(
      ([label, resolution]) =>
        html`<button type="button" data-resolve="${e.id}" data-resolution="${resolution}">${label}</button>`,
    )}</span
  >`;
}

function detail(e: FleetException): Record<string, unknown> {
  return e.detail && typeof e.detail === 'object' ? (e.detail as Record<string, unknown>) : {};
}

function exceptionRow(
  e: FleetException,
  text: SafeHtml,
  role: LiveView['role'],
  choices: [string, string][],
) {
  return html`<li class="exception" data-exception="${e.id}" data-kind="${e.kind}">
    <span class="what">${text}</span
    ><span class="meta"
      >${e.deviceId ?? ''}${e.seq !== null ? ` seq ${e.seq}` : ''} · ${when(e.occurredAt)}</span
    >${resolveButtons(e, role, choices)}
  </li>`;
}

function list(items: SafeHtml[], empty: string): SafeHtml {
  return items.length
    ? html`<ul class="exceptions">
        ${items}
      </ul>`
    : html`<p class="empty">${empty}</p>`;
}

function money(minor: unknown, currency: unknown): string {
  return typeof minor === 'number' && typeof currency === 'string' ? formatMinor(minor, currency) : '';
}

export function renderLive(v: LiveView): SafeHtml {
  const from = v.nowMs - FLEET_DEFAULTS.chartWindowMs;
  const stores = [...new Set([...v.sales.map((s) => s.storeId), ...v.lag.map((l) => l.storeId)])].sort();
  const oversoldSkus = new Map<string, number>();
  for (const e of v.exceptions.oversells) {
    const sku = detail(e).sku;
    if (typeof sku === 'string') oversoldSkus.set(sku, (oversoldSkus.get(sku) ?? 0) + 1);
  }
  const charts = stores.map((storeId) => {
    const sales = v.sales.filter((s) => s.storeId === storeId);
    const lag = v.lag.find((l) => l.storeId === storeId);
    return html`<div class="store-charts" data-store="${storeId}">
      <h3>${storeId}</h3>
      ${sales.map(
        (s) =>
          html`<figure>
            <figcaption>Sales per hour (${s.currency})</figcaption>
            ${barChart(
              `Sales per hour, ${storeId}, ${s.currency}`,
              s.buckets.map((b) => ({
                t: b.t,
                value: b.totalMinor,
                label: `${when(b.t)}: ${formatMinor(b.totalMinor, s.currency)}, ${b.count} sales`,
              })),
              (x) => formatMinor(x, s.currency),
            )}
          </figure>`,
      )}
      <figure>
        <figcaption>Records pending (sync lag)</figcaption>
        ${stepChart(
          `Records pending, ${storeId}`,
          (lag?.points ?? []).map((p) => ({ t: p.t, value: p.pending })),
          from,
          v.nowMs,
        )}
      </figure>
    </div>`;
  });
  const { oversells, quarantine, alarms, safDeclines } = v.exceptions;
  return html`<section id="registers">
      <h2>
        Registers
        <small
          >card forwarding deadline ${age(v.deadlineMs)}: amber at ${FLEET_DEFAULTS.amberAt * 100}%, red at
          ${FLEET_DEFAULTS.redAt * 100}%</small
        >
      </h2>
      <div class="cards">
        ${v.devices.length ? v.devices.map(deviceCard) : html`<p class="empty">No register has reported yet.</p>`}
      </div>
    </section>
    <section id="charts">
      <h2>Sales and sync lag <small>last 24 h</small></h2>
      ${charts.length ? charts : html`<p class="empty">No sales or statuses in the last 24 h.</p>`}
    </section>
    <section id="stock">
      <h2>Stock and oversells</h2>
      <h3>Oversells to resolve</h3>
      ${list(
        oversells.map((e) => {
          const d = detail(e);
          return exceptionRow(
            e,
            html`<b>${String(d.sku ?? '?')}</b>: ${String(d.shortQty ?? '?')} short (wanted
              ${String(d.wantedQty ?? '?')}, on hand ${String(d.onHandBefore ?? '?')}), sale ${e.ref}`,
            v.role,
            [
              ['Backordered', 'backordered'],
              ['Recounted', 'recounted'],
            ],
          );
        }),
        'No open oversells.',
      )}
      <div class="scroll">
        <table class="stock">
          <thead>
            <tr>
              <th>SKU</th>
              <th>On hand</th>
              <th>Open oversells</th>
              <th>Updated</th>
            </tr>
          </thead>
          <tbody>
            ${v.stock.map(
              (s) =>
                html`<tr data-sku="${s.sku}" class="${oversoldSkus.has(s.sku) ? 'oversold' : ''}">
                  <td>${s.sku}</td>
                  <td class="num">${s.onHand}</td>
                  <td class="num">${oversoldSkus.get(s.sku) ?? ''}</td>
                  <td>${when(s.updatedAt)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
    </section>
    <section id="alarms">
      <h2>Alarms</h2>
      <h3>Hash chain and gaps</h3>
      ${list(
        alarms.map((e) =>
          exceptionRow(
            e,
            e.kind === 'gap'
              ? html`<b>gap</b>: records
                  ${String(detail(e).missingFrom ?? '?')}–${String(detail(e).missingThrough ?? '?')} missing`
              : html`<b>chain break</b>: ${String(detail(e).code ?? '')} at ${e.ref}`,
            v.role,
            [['Checked', 'checked']],
          ),
        ),
        'No chain or gap alarms.',
      )}
      <h3>Quarantine</h3>
      ${list(
        quarantine.map((e) =>
          exceptionRow(e, html`<code class="code">${String(detail(e).code ?? '?')}</code> ${e.ref}`, v.role, [
            ['Reviewed', 'reviewed'],
          ]),
        ),
        'Nothing quarantined.',
      )}
      <h3>Card payments declined after forwarding (SAF)</h3>
      ${list(
        safDeclines.map((e) => {
          const d = detail(e);
          return exceptionRow(
            e,
            html`<b>${money(d.amountMinor, d.currency)}</b> txn
              ${String(d.txn ?? '?')}${d.saleId ? html`, sale <a href="#receipt" data-receipt="${String(d.saleId)}">${String(d.saleId)}</a>` : ''}`,
            v.role,
            [['Followed up', 'followed up with the customer']],
          );
        }),
        'No declined card payments to follow up.',
      )}
    </section>
    <section id="sales">
      <h2>Recent sales</h2>
      <div class="scroll">
        <table class="sales">
          <thead>
            <tr>
              <th>When</th>
              <th>Register</th>
              <th>No.</th>
              <th>Total</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            ${v.recentSales.map(
              (s) =>
                html`<tr data-sale="${s.saleId}">
                  <td>${when(s.completedAt)}</td>
                  <td>${s.deviceId}</td>
                  <td class="num">${s.receiptNo}</td>
                  <td class="num">${formatMinor(s.totalMinor, s.currency)}</td>
                  <td><a href="#receipt" data-receipt="${s.saleId}">Receipt</a></td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
    </section>`;
}

export function renderPage(o: { operator: string; role: string; csrfToken: string; live: SafeHtml }): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="csrf-token" content="${o.csrfToken}" />
        <title>Fleet · ledger</title>
        <link rel="stylesheet" href="/fleet/app.css" />
        <script src="/fleet/app.js" defer></script>
      </head>
      <body class="role-${o.role}">
        <header class="top">
          <h1>Fleet</h1>
          <span id="conn" class="conn">connecting…</span> <span class="who">${o.operator} (${o.role})</span
          ><button type="button" id="logout">Log out</button>
        </header>
        <main>
          <div id="live" data-version="0">${o.live}</div>
          <section id="receipt-view">
            <h2>Receipt</h2>
            <form id="receipt-form">
              <label>Sale id <input name="sale" autocomplete="off" required maxlength="128" /></label
              ><button type="submit">Show</button>
            </form>
            <div id="receipt"><p class="empty">Pick a sale's receipt above, or give a sale id.</p></div>
          </section>
        </main>
      </body>
    </html>`.text;
}

export function renderLogin(): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>Log in · ledger</title>
        <link rel="stylesheet" href="/fleet/app.css" />
        <script src="/fleet/login.js" defer></script>
      </head>
      <body class="login">
        <main>
          <form id="login-form" class="login-form">
            <h1>Fleet</h1>
            <label>Operator <input name="name" autocomplete="username" required maxlength="32" /></label>
            <label
              >Password
              <input name="password" type="password" autocomplete="current-password" required maxlength="200"
            /></label>
            <button type="submit">Log in</button>
            <p id="login-error" class="error" role="alert"></p>
          </form>
        </main>
      </body>
    </html>`.text;
}
