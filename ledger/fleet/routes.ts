// The fleet page's routes on the ledger's HTTP server: the page and its login, the static assets, the
// live part as HTML, the same data as JSON, and any sale's receipt as SVG.
import type { Principal } from '../auth/access.js';
import { LedgerError } from '../errors.js';
import type { ApiResponse, RequestContext, Route } from '../http.js';
import { APP_CSS, APP_JS, ICON_SVG, LOGIN_JS } from '../web/assets.js';
import { renderLive, renderLogin, renderPage, type LiveView } from '../web/page.js';
import type { FleetMonitor } from './overview.js';

/**
 * What the page may load: itself only. No inline script or style, no other origin, no framing; the
 * receipts are pictures from here.
 */
export const FLEET_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const page = (contentType: string, body: string, extra: Record<string, string> = {}): ApiResponse => ({
  status: 200,
  body: null,
  raw: { contentType, body },
  headers: { 'content-security-policy': FLEET_CSP, 'x-frame-options': 'DENY', ...extra },
});

/** Static assets may be cached briefly; they hold no data. */
const asset = (contentType: string, body: string) =>
  page(contentType, body, { 'cache-control': 'max-age=300' });

export async function liveView(fleet: FleetMonitor, role: LiveView['role']): Promise<LiveView> {
  const [devices, sales, stock, exceptions, recentSales] = await Promise.all([
    fleet.devices(),
    fleet.salesSeries(),
    fleet.stock(),
    fleet.openExceptions(),
    fleet.recentSales(),
  ]);
  return {
    nowMs: fleet.nowMs(),
    deadlineMs: fleet.deadlineMs,
    role,
    devices,
    sales,
    lag: fleet.lagSeries(),
    stock,
    exceptions,
    recentSales,
  };
}

/** The operator's role for the page: a token or loopback principal sees what an admin sees. */
function roleOf(ctx: RequestContext): LiveView['role'] {
  const p = ctx.locals.principal as Principal | undefined;
  return p?.role === 'viewer' ? 'viewer' : 'admin';
}

export function fleetRoutes(fleet: FleetMonitor): Route[] {
  return [
    {
      method: 'GET',
      path: '/',
      name: 'fleet.root',
      access: 'public',
      handle: async () => ({ status: 303, body: null, headers: { location: '/fleet' } }),
    },
    {
      method: 'GET',
      path: '/fleet',
      name: 'fleet.page',
      handle: async (ctx) => {
        const p = ctx.locals.principal as Principal;
        if (p.kind !== 'session')
          throw new LedgerError('UNAUTHENTICATED', 'the page is for a logged-in operator');
        const role = roleOf(ctx);
        const live = renderLive(await liveView(fleet, role));
        return page(
          'text/html; charset=utf-8',
          renderPage({ operator: p.operator, role, csrfToken: p.session.csrfToken, live }),
        );
      },
    },
    {
      method: 'GET',
      path: '/fleet/login',
      name: 'fleet.login',
      access: 'public',
      handle: async () => page('text/html; charset=utf-8', renderLogin()),
    },
    {
      method: 'GET',
      path: '/fleet/app.css',
      name: 'fleet.css',
      access: 'public',
      handle: async () => asset('text/css; charset=utf-8', APP_CSS),
    },
    {
      method: 'GET',
      path: '/fleet/app.js',
      name: 'fleet.js',
      access: 'public',
      handle: async () => asset('text/javascript; charset=utf-8', APP_JS),
    },
    {
      method: 'GET',
      path: '/favicon.ico',
      name: 'fleet.icon',
      access: 'public',
      handle: async () => asset('image/svg+xml', ICON_SVG),
    },
    {
      method: 'GET',
      path: '/fleet/login.js',
      name: 'fleet.login.js',
      access: 'public',
      handle: async () => asset('text/javascript; charset=utf-8', LOGIN_JS),
    },
    {
      method: 'GET',
      path: '/fleet/live',
      name: 'fleet.live',
      handle: async (ctx) =>
        page('text/html; charset=utf-8', renderLive(await liveView(fleet, roleOf(ctx))).text),
    },
    {
      method: 'GET',
      path: '/fleet/api/overview',
      name: 'fleet.overview',
      handle: async (ctx) => ({ status: 200, body: await liveView(fleet, roleOf(ctx)) }),
    },
    {
      method: 'GET',
      path: '/fleet/receipts/:saleId',
      name: 'fleet.receipt',
      handle: async (ctx) => {
        const saleId = ctx.params.saleId!;
        if (saleId.length < 1 || saleId.length > 128)
          throw new LedgerError('BAD_PARAMS', 'a sale id is 1 to 128 characters');
        const svg = await fleet.receiptSvg(saleId);
        if (svg === null) throw new LedgerError('NOT_FOUND', `no sale ${saleId}`);
        return page('image/svg+xml; charset=utf-8', svg);
      },
    },
  ];
}
