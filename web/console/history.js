// The customer's other tickets, in the ticket view's customer section: what an agent reads
// before answering someone who has written before (Zendesk's interaction history, Chatwoot's
// previous conversations). Newest first; each links to its ticket by the reference the
// customer was told. Asked again when the ticket changes (a merge may bring more).

import { useEffect, useState } from 'preact/hooks';
import { html, ticketRef } from './ui.js';
import { t, when } from './i18n.js';
import { api, query } from './api.js';

/** How many of the other tickets are listed. */
const SHOWN = 10;

/** Cuts a subject to `n` characters (not UTF-16 units), with an ellipsis. */
function short(text, n = 60) {
  const chars = [...(text || '')];
  return chars.length > n ? chars.slice(0, n - 1).join('') + '…' : chars.join('');
}

export function CustomerTickets({ ticket: tk }) {
  const [others, setOthers] = useState(null);
  const [more, setMore] = useState(false);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    const ctl = new AbortController();
    const q = query({ customer_id: tk.customer_id, limit: SHOWN + 1 });
    api('GET', '/tickets' + q, { signal: ctl.signal }).then(
      ({ data }) => {
        const rest = data.tickets.filter((x) => x.id !== tk.id);
        setOthers(rest.slice(0, SHOWN));
        setMore(rest.length > SHOWN || (rest.length === SHOWN && !!data.next_cursor));
        setFailed(false);
      },
      (e) => {
        if (e.name !== 'AbortError') setFailed(true);
      },
    );
    return () => ctl.abort();
  }, [tk.id, tk.customer_id, tk.version]);

  if (failed && others === null) return html`<p class="hint">${t('history.failed')}</p>`;
  if (others === null) return null;
  return html`<div class="history">
    <h3 id="history-title">${t('history.title')}</h3>
    ${others.length === 0
      ? html`<p class="hint">${t('history.none')}</p>`
      : html`<ul aria-labelledby="history-title">
          ${others.map((o) => html`<li>
            <a href=${'#/tickets/' + encodeURIComponent(o.id)}>
              <code>${ticketRef(o.id)}</code> ${short(o.subject || o.description)}
            </a>
            <span class="hint"> · ${t('status.' + o.status)} · <time datetime=${o.created_at}>${when(o.created_at)}</time></span>
          </li>`)}
        </ul>`}
    ${more ? html`<p class="hint">${t('history.more', { n: SHOWN })}</p>` : null}
  </div>`;
}
