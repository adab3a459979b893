// The fleet page's two charts as inline SVG, drawn here rather than by a library: bars of sales per
// hour, and a step line of records pending over time. Sized by viewBox so they scale to any width.
import { html, type SafeHtml } from './html.js';

const W = 600;
const H = 160;
const PAD = { left: 84, right: 8, top: 12, bottom: 22 };

/** A round number ≥ max for the axis top, so the scale reads cleanly (1, 2, 5 × 10^n). */
export function niceCeiling(max: number): number {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

function hourLabel(t: number): string {
  return `${String(new Date(t).getUTCHours()).padStart(2, '0')}:00`;
}

function frame(top: number, label: (v: number) => string, from: number, to: number): SafeHtml {
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const mid = (from + to) / 2;
  return html`<line class="axis" x1="${x0}" y1="${y0}" x2="${x1}" y2="${y0}" />
    <line class="grid" x1="${x0}" y1="${PAD.top}" x2="${x1}" y2="${PAD.top}" />
    <text class="tick" x="${x0 - 4}" y="${PAD.top + 4}" text-anchor="end">${label(top)}</text>
    <text class="tick" x="${x0 - 4}" y="${y0}" text-anchor="end">0</text>
    <text class="tick" x="${x0}" y="${H - 6}">${hourLabel(from)}</text>
    <text class="tick" x="${(x0 + x1) / 2}" y="${H - 6}" text-anchor="middle">${hourLabel(mid)}</text>
    <text class="tick" x="${x1}" y="${H - 6}" text-anchor="end">${hourLabel(to)} UTC</text>`;
}

/** Bars, one per bucket, with the value as each bar's tooltip. */
export function barChart(
  title: string,
  buckets: { t: number; value: number; label: string }[],
  axisLabel: (v: number) => string,
): SafeHtml {
  const top = niceCeiling(Math.max(0, ...buckets.map((b) => b.value)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, buckets.length);
  const bars = buckets.map((b, i) => {
    const h = (Math.max(0, b.value) / top) * plotH;
    return html`<rect
      class="bar"
      x="${(PAD.left + i * slot + 1).toFixed(1)}"
      y="${(PAD.top + plotH - h).toFixed(1)}"
      width="${Math.max(1, slot - 2).toFixed(1)}"
      height="${h.toFixed(1)}"
      ><title>${b.label}</title></rect
    >`;
  });
  const from = buckets[0]?.t ?? 0;
  const to = (buckets[buckets.length - 1]?.t ?? 0) + 60 * 60 * 1000;
  return html`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${title}">
    <title>${title}</title>
    ${frame(top, axisLabel, from, to)}${bars}
  </svg>`;
}

/** A step line: each value holds until the next point; the last holds until `to`. */
export function stepChart(
  title: string,
  points: { t: number; value: number }[],
  from: number,
  to: number,
): SafeHtml {
  const top = niceCeiling(Math.max(0, ...points.map((p) => p.value)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t: number) =>
    PAD.left + ((Math.min(Math.max(t, from), to) - from) / Math.max(1, to - from)) * plotW;
  const y = (v: number) => PAD.top + plotH - (Math.max(0, v) / top) * plotH;
  let d = '';
  points.forEach((p, i) => {
    d +=
      i === 0
        ? `M${x(p.t).toFixed(1)},${y(p.value).toFixed(1)}`
        : `H${x(p.t).toFixed(1)}V${y(p.value).toFixed(1)}`;
  });
  if (points.length) d += `H${x(to).toFixed(1)}`;
  return html`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${title}">
    <title>${title}</title>
    ${frame(top, String, from, to)}${d ? html`<path class="step" d="${d}" />` : ''}
  </svg>`;
}
