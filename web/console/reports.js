// Reports for supervisors: satisfaction over a period (with the rating distribution drawn
// as SVG), by channel and by agent; and volume: tickets opened and closed per day and the
// median first-response time.

import { useEffect, useState } from 'preact/hooks';
import { html, Notice } from './ui.js';
import { t, lang } from './i18n.js';
import { api, query } from './api.js';

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

function Bars({ label, bars, width = 420, height = 160 }) {
  // One bar per entry: [name, value]. Drawn in SVG; the figure's name and each bar's
  // <title> carry the numbers for screen readers.
  const max = Math.max(1, ...bars.map(([, v]) => v));
  const slot = width / Math.max(1, bars.length);
  const summary = bars.map(([n, v]) => `${n}: ${v}`).join(', ');
  const top = 16;
  return html`<svg class="chart" role="img" aria-label=${label + ' — ' + summary} viewBox=${`0 ${-top} ${width} ${height + 20 + top}`} width=${width} height=${height + 20 + top}>
    ${bars.map(([name, value], i) => {
      const h = Math.round((value / max) * height);
      return html`<g>
        <title>${name}: ${value}</title>
        <rect x=${i * slot + slot * 0.15} y=${height - h} width=${slot * 0.7} height=${h} class="bar" />
        <text x=${i * slot + slot / 2} y=${height + 15} text-anchor="middle" class="axis">${name}</text>
        ${value ? html`<text x=${i * slot + slot / 2} y=${height - h - 3} text-anchor="middle" class="value">${value}</text>` : null}
      </g>`;
    })}
  </svg>`;
}

function DayBars({ label, days }) {
  // Opened and closed side by side for each day.
  const width = Math.max(420, days.length * 16);
  const height = 140;
  const max = Math.max(1, ...days.map((d) => Math.max(d.opened, d.closed)));
  const slot = width / Math.max(1, days.length);
  const summary = days.filter((d) => d.opened || d.closed).map((d) => `${d.date}: +${d.opened} −${d.closed}`).join(', ');
  return html`<svg class="chart" role="img" aria-label=${label + (summary ? ' — ' + summary : '')} viewBox=${`0 0 ${width} ${height + 20}`} width=${width} height=${height + 20}>
    ${days.map((d, i) => {
      const ho = Math.round((d.opened / max) * height);
      const hc = Math.round((d.closed / max) * height);
      return html`<g>
        <title>${d.date}: ${t('reports.opened')} ${d.opened}, ${t('reports.closed')} ${d.closed}</title>
        <rect x=${i * slot + 1} y=${height - ho} width=${slot / 2 - 1} height=${ho} class="bar opened" />
        <rect x=${i * slot + slot / 2} y=${height - hc} width=${slot / 2 - 1} height=${hc} class="bar closed" />
        ${i % 7 === 0 ? html`<text x=${i * slot} y=${height + 15} class="axis">${d.date.slice(5)}</text>` : null}
      </g>`;
    })}
  </svg>`;
}

function duration(secs) {
  if (secs === null || secs === undefined) return t('reports.none');
  const [unit, value] = secs < 60 ? ['second', secs] : secs < 3600 ? ['minute', secs / 60] : ['hour', secs / 3600];
  return new Intl.NumberFormat(lang(), { style: 'unit', unit, unitDisplay: 'long', maximumFractionDigits: 1 }).format(value);
}

function Groups({ title, groups, names }) {
  const rows = Object.entries(groups || {});
  return html`<table>
    <caption>${title}</caption>
    <thead><tr><th scope="col"></th><th scope="col">${t('reports.count')}</th><th scope="col">${t('reports.average')}</th></tr></thead>
    <tbody>${rows.map(([name, g]) => html`<tr><th scope="row">${names ? names(name) : name}</th><td>${g.count}</td><td>${g.average ?? t('reports.none')}</td></tr>`)}</tbody>
  </table>`;
}

export function Reports({ me }) {
  const today = new Date();
  const [from, setFrom] = useState(isoDay(new Date(today.getTime() - 29 * 86400000)));
  const [to, setTo] = useState(isoDay(today));
  const [csat, setCsat] = useState(null);
  const [volume, setVolume] = useState(null);
  const [error, setError] = useState(null);
  const supervisor = me.role === 'supervisor' || me.role === 'admin';

  const load = async () => {
    // What is shown is always the period asked for: a refusal leaves no older figures.
    const refused = (message) => {
      setCsat(null);
      setVolume(null);
      setError(message);
    };
    if (!from || !to) return refused(t('reports.both_days'));
    // `to` is a whole day: the period ends at the start of the next one.
    const end = isoDay(new Date(new Date(to + 'T00:00:00Z').getTime() + 86400000));
    try {
      const [c, v] = await Promise.all([
        api('GET', '/reports/csat' + query({ from, to: end })),
        api('GET', '/reports/volume' + query({ from, to: end })),
      ]);
      setCsat(c.data);
      setVolume(v.data);
      setError(null);
    } catch (e) {
      refused(e.status === 0 ? t('error.unreachable') : t('error.generic', { message: e.message }));
    }
  };
  useEffect(() => {
    if (supervisor) load();
  }, []);

  if (!supervisor) return html`<main class="reports"><p>${t('reports.supervisors')}</p></main>`;
  return html`<main class="reports">
    <h1>${t('reports.title')}</h1>
    <form class="period" onSubmit=${(e) => { e.preventDefault(); load(); }}>
      <label class="field"><span>${t('reports.from')}</span><input type="date" value=${from} onInput=${(e) => setFrom(e.currentTarget.value)} /></label>
      <label class="field"><span>${t('reports.to')}</span><input type="date" value=${to} onInput=${(e) => setTo(e.currentTarget.value)} /></label>
      <button class="primary" type="submit">${t('reports.show')}</button>
    </form>
    <${Notice} kind="error">${error}<//>
    ${csat
      ? html`<section aria-labelledby="csat-title">
          <h2 id="csat-title">${t('reports.csat')}</h2>
          <p class="figures"><span>${t('reports.count')}: <strong>${csat.count}</strong></span>
            <span>${t('reports.average')}: <strong>${csat.average ?? t('reports.none')}</strong></span></p>
          <${Bars} label=${t('reports.distribution')} bars=${['1', '2', '3', '4', '5'].map((n) => [n + '★', csat.distribution[n] || 0])} />
          <div class="tables"><${Groups} title=${t('reports.by_channel')} groups=${csat.by_channel} names=${(c) => t('channel.' + c)} />
          <${Groups} title=${t('reports.by_agent')} groups=${csat.by_agent} /></div>
        </section>`
      : null}
    ${volume
      ? html`<section aria-labelledby="volume-title">
          <h2 id="volume-title">${t('reports.volume')}</h2>
          <p class="figures"><span>${t('reports.opened')}: <strong>${volume.opened}</strong></span>
            <span>${t('reports.closed')}: <strong>${volume.closed}</strong></span>
            <span>${t('reports.median_first_response')}: <strong>${duration(volume.median_first_response_secs)}</strong></span></p>
          <${DayBars} label=${t('reports.per_day')} days=${volume.days} />
        </section>`
      : null}
  </main>`;
}
