// Reports for supervisors: satisfaction over a period (with the rating distribution drawn
// as SVG), by channel and by agent; volume: tickets opened and closed per day and the
// median first-response time; and SLA attainment per priority. Days are the team's.

import { useEffect, useState } from 'preact/hooks';
import { html, Notice } from './ui.js';
import { t, lang } from './i18n.js';
import { api, query } from './api.js';
import { typedTag } from './tags.js';

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

/** The closed bars' fill: green with white stripes, so they differ from the opened bars
 * (plain blue) by more than colour. Referenced by the chart and by its legend. */
function Hatch() {
  return html`<svg width="0" height="0" class="defs" aria-hidden="true" focusable="false"><defs>
    <pattern id="closed-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
      <rect width="6" height="6" fill="#2da44e" /><rect width="2" height="6" fill="#fff" />
    </pattern>
  </defs></svg>`;
}

/** The chart's key, in words beside each bar's look: opened (left, plain), closed (right,
 * striped). */
function Legend() {
  const swatch = (kind) => html`<svg class="swatch" width="14" height="14" aria-hidden="true" focusable="false">
    <rect width="14" height="14" class=${'bar ' + kind} /></svg>`;
  return html`<ul class="legend" aria-label=${t('reports.legend')}>
    <li>${swatch('opened')} ${t('reports.legend_opened')}</li>
    <li>${swatch('closed')} ${t('reports.legend_closed')}</li>
  </ul>`;
}

/** The chart's numbers as a table: each day that had a ticket opened or closed. */
function DayTable({ days }) {
  const busy = days.filter((d) => d.opened || d.closed);
  return html`<table class="day-table">
    <caption>${t('reports.per_day_table')}</caption>
    <thead><tr><th scope="col">${t('reports.day')}</th><th scope="col">${t('reports.opened')}</th><th scope="col">${t('reports.closed')}</th></tr></thead>
    <tbody>${busy.length
      ? busy.map((d) => html`<tr><th scope="row"><time datetime=${d.date}>${d.date}</time></th><td>${d.opened}</td><td>${d.closed}</td></tr>`)
      : html`<tr><td colspan="3" class="hint">${t('reports.no_volume')}</td></tr>`}</tbody>
  </table>`;
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

/** Ratings per channel or per agent; a period with none says so, not an empty table. */
function Groups({ title, heading, groups, names }) {
  const rows = Object.entries(groups || {});
  return html`<table>
    <caption>${title}</caption>
    <thead><tr><th scope="col">${heading}</th><th scope="col">${t('reports.count')}</th><th scope="col">${t('reports.average')}</th></tr></thead>
    <tbody>${rows.length
      ? rows.map(([name, g]) => html`<tr><th scope="row">${names ? names(name) : name}</th><td>${g.count}</td><td>${g.average ?? t('reports.none')}</td></tr>`)
      : html`<tr><td colspan="3" class="hint">${t('reports.no_ratings')}</td></tr>`}</tbody>
  </table>`;
}

/** The day after `day` (YYYY-MM-DD), as the API's exclusive end. */
function nextDay(day) {
  return isoDay(new Date(new Date(day + 'T00:00:00Z').getTime() + 86400000));
}

function percent(x) {
  return x === null || x === undefined ? t('reports.none') : new Intl.NumberFormat(lang(), { style: 'percent', maximumFractionDigits: 1 }).format(x);
}

function SlaTable({ sla }) {
  if (!sla.priorities.length) return html`<p>${t('reports.sla_none')}</p>`;
  const target = (o) => html`<td>${percent(o.attainment)}</td><td>${o.met}</td><td>${o.breached}</td><td>${o.pending}</td>`;
  // The next reply has its columns only where a policy sets it (it counts waits).
  const counted = (o) => o && o.met + o.breached + o.pending > 0;
  const targets = ['first_response', 'next_reply', 'resolution'].filter(
    (k) => k !== 'next_reply' || sla.priorities.some((p) => counted(p.next_reply)),
  );
  // Four columns a target: the first header row names the target over its columns, so a
  // screen reader reads "First response, Met" and "Resolution, Met" apart.
  const group = (key) => html`<th scope="colgroup" colspan="4">${t('reports.' + key)}</th>`;
  const cols = () => ['reports.attained', 'reports.met', 'reports.breached', 'reports.pending'].map((k) => html`<th scope="col">${t(k)}</th>`);
  return html`<table>
    <caption>${t('reports.sla_table')}</caption>
    <colgroup span="2"></colgroup>${targets.map(() => html`<colgroup span="4"></colgroup>`)}<colgroup span="1"></colgroup>
    <thead>
      <tr><td colspan="2"></td>${targets.map(group)}<td></td></tr>
      <tr><th scope="col">${t('filter.priority')}</th><th scope="col">${t('reports.tickets')}</th>${targets.map(cols)}
        <th scope="col">${t('reports.median_first_response')}</th></tr>
    </thead>
    <tbody>${sla.priorities.map((p) => html`<tr><th scope="row">${t('priority.' + p.priority)}</th><td>${p.tickets}</td>
      ${targets.map((k) => target(p[k] || { met: 0, breached: 0, pending: 0, attainment: null }))}<td>${duration(p.median_first_response_secs)}</td></tr>`)}</tbody>
  </table>`;
}

export function Reports({ me }) {
  // The period's days are the team's (the rules' time zone): the first load asks the desk
  // for its default, the last 30 of them, and shows that period.
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  // A tag narrows every report to its tickets; `shownTag` is the one the figures are for.
  const [tag, setTag] = useState('');
  const [shownTag, setShownTag] = useState('');
  const [csat, setCsat] = useState(null);
  const [volume, setVolume] = useState(null);
  const [sla, setSla] = useState(null);
  const [error, setError] = useState(null);
  const supervisor = me.role === 'supervisor' || me.role === 'admin';

  const load = async (first) => {
    // What is shown is always the period asked for: a refusal leaves no older figures.
    const refused = (message) => {
      setCsat(null);
      setVolume(null);
      setSla(null);
      setError(message);
    };
    if (!first && (!from || !to)) return refused(t('reports.both_days'));
    try {
      let period = { from, to };
      let defaultVolume = null;
      if (first) {
        defaultVolume = (await api('GET', '/reports/volume')).data;
        const days = defaultVolume.days;
        period = { from: days[0].date, to: days[days.length - 1].date };
        setFrom(period.from);
        setTo(period.to);
      }
      // `to` is a whole day: the period ends at the start of the next one.
      // A leading `#` and spaces are the desk's to drop; an empty box is no tag.
      const narrowed = first ? '' : typedTag(tag);
      const q = query({ from: period.from, to: nextDay(period.to), tag: narrowed });
      const [c, v, l] = await Promise.all([
        api('GET', '/reports/csat' + q),
        defaultVolume ? { data: defaultVolume } : api('GET', '/reports/volume' + q),
        api('GET', '/reports/sla' + q),
      ]);
      setCsat(c.data);
      setVolume(v.data);
      setSla(l.data);
      // As the desk folded it (`ＶＩＰ` counts `vip`).
      setShownTag(l.data.tag || '');
      setError(null);
    } catch (e) {
      refused(e.status === 0 ? t('error.unreachable') : t('error.generic', { message: e.message }));
    }
  };
  useEffect(() => {
    if (supervisor) load(true);
  }, []);

  if (!supervisor) return html`<main class="reports"><p>${t('reports.supervisors')}</p></main>`;
  return html`<main class="reports">
    <h1>${t('reports.title')}</h1>
    <form class="period" onSubmit=${(e) => { e.preventDefault(); load(false); }}>
      <label class="field"><span>${t('reports.from')}</span><input type="date" value=${from} onInput=${(e) => setFrom(e.currentTarget.value)} /></label>
      <label class="field"><span>${t('reports.to')}</span><input type="date" value=${to} onInput=${(e) => setTo(e.currentTarget.value)} /></label>
      <label class="field"><span>${t('reports.tag')}</span><input type="text" value=${tag} maxlength="64" onInput=${(e) => setTag(e.currentTarget.value)} /></label>
      <button class="primary" type="submit">${t('reports.show')}</button>
    </form>
    ${volume ? html`<p class="hint">${t('reports.zone', { zone: volume.timezone })}</p>` : null}
    ${volume && shownTag ? html`<p class="hint">${t('reports.tagged', { tag: shownTag })}</p>` : null}
    <${Notice} kind="error">${error}<//>
    ${csat
      ? html`<section aria-labelledby="csat-title">
          <h2 id="csat-title">${t('reports.csat')}</h2>
          <p class="figures"><span>${t('reports.count')}: <strong>${csat.count}</strong></span>
            <span>${t('reports.average')}: <strong>${csat.average ?? t('reports.none')}</strong></span></p>
          <${Bars} label=${t('reports.distribution')} bars=${['1', '2', '3', '4', '5'].map((n) => [n + '★', csat.distribution[n] || 0])} />
          <div class="tables"><${Groups} title=${t('reports.by_channel')} heading=${t('filter.channel')} groups=${csat.by_channel} names=${(c) => t('channel.' + c)} />
          <${Groups} title=${t('reports.by_agent')} heading=${t('reports.agent')} groups=${csat.by_agent} names=${(a) => (a === 'unassigned' ? t('reports.nobody') : a)} /></div>
        </section>`
      : null}
    ${volume
      ? html`<section aria-labelledby="volume-title">
          <h2 id="volume-title">${t('reports.volume')}</h2>
          <p class="figures"><span>${t('reports.opened')}: <strong>${volume.opened}</strong></span>
            <span>${t('reports.closed')}: <strong>${volume.closed}</strong></span>
            <span>${t('reports.median_first_response')}: <strong>${duration(volume.median_first_response_secs)}</strong></span></p>
          <${Hatch} />
          <${DayBars} label=${t('reports.per_day')} days=${volume.days} />
          <${Legend} />
          <${DayTable} days=${volume.days} />
        </section>`
      : null}
    ${sla
      ? html`<section aria-labelledby="sla-title">
          <h2 id="sla-title">${t('reports.sla')}</h2>
          <${SlaTable} sla=${sla} />
        </section>`
      : null}
  </main>`;
}
