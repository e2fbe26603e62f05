// One ticket: the conversation with its delivery states, the reply box (Enter sends, but
// never while an input method is composing), internal notes, the knowledge base's
// suggestions, changes sent with If-Match, escalation, and customer merge for supervisors.

import { useEffect, useRef, useState } from 'preact/hooks';
import { html, usePoll, Select, Notice, isSendingEnter, STATUSES, PRIORITIES, SKILLS } from './ui.js';
import { t, when } from './i18n.js';
import { api } from './api.js';
import { AssignmentSection, SlaSection, SlaShort, escalationReason } from './assignment.js';

const POLL_MS = 3000;

function Entry({ m }) {
  const outbound = m.direction === 'outbound';
  return html`<li class=${'entry kind-' + m.kind + ' dir-' + m.direction}>
    <div class="entry-head">
      <span class="who">${t('kind.' + m.kind)}${m.author ? ' · ' + m.author : ''}</span>
      <time datetime=${m.created_at}>${when(m.created_at)}</time>
      ${outbound && m.status
        ? html`<span class=${'delivery delivery-' + m.status}>${t('delivery.' + m.status)}${m.error ? ': ' + m.error : ''}</span>`
        : null}
    </div>
    <div class="entry-text">${m.text}</div>
    ${m.attachment ? html`<div class="hint">${m.attachment.kind || ''} ${m.attachment.media_id || ''}</div>` : null}
  </li>`;
}

function Composer({ label, button, onSend, focus, textRef, busy }) {
  const [text, setText] = useState('');
  const own = useRef(null);
  const ref = textRef || own;
  useEffect(() => {
    if (focus) ref.current?.focus();
  }, [focus]);
  const send = async () => {
    const value = (ref.current?.value ?? text).trim();
    if (!value || busy) return;
    if (await onSend(value)) {
      setText('');
      if (ref.current) ref.current.value = '';
    }
  };
  return html`<form class="composer" onSubmit=${(e) => { e.preventDefault(); send(); }}>
    <label class="field">
      <span>${label}</span>
      <textarea ref=${ref} rows="3" value=${text} onInput=${(e) => setText(e.currentTarget.value)}
        onKeyDown=${(e) => { if (isSendingEnter(e)) { e.preventDefault(); send(); } }}></textarea>
    </label>
    <div class="composer-foot"><span class="hint">${t('ticket.enter_hint')}</span>
      <button class="primary" type="submit" disabled=${busy}>${button}</button></div>
  </form>`;
}

/** `list` with `page` merged in: an entry already there takes its new copy (its delivery
 * state moves on), and new ones go at the end, in the page's order. */
function mergeMessages(list, page) {
  const fresh = new Map(page.map((m) => [m.id, m]));
  const merged = list.map((m) => fresh.get(m.id) || m);
  const known = new Set(list.map((m) => m.id));
  return merged.concat(page.filter((m) => !known.has(m.id)));
}

export function TicketView({ id, me, focusReply }) {
  const [view, setView] = useState(null);
  // The API answers the newest page of the conversation; polls keep what they saw, and
  // "Load earlier messages" prepends the pages before it.
  const [recent, setRecent] = useState([]);
  const [earlier, setEarlier] = useState([]);
  const [earlierCursor, setEarlierCursor] = useState(undefined);
  const [loadingEarlier, setLoadingEarlier] = useState(false);
  const [missing, setMissing] = useState(false);
  const [conflict, setConflict] = useState(false);
  const [notice, setNotice] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [assignee, setAssignee] = useState('');
  const [reason, setReason] = useState('');
  const [mergeFrom, setMergeFrom] = useState('');
  const replyRef = useRef(null);
  const supervisor = me.role === 'supervisor' || me.role === 'admin';

  const load = async () => {
    try {
      const { data } = await api('GET', '/tickets/' + encodeURIComponent(id));
      setView(data);
      setRecent((seen) => mergeMessages(seen, data.messages));
      setEarlierCursor((c) => (c === undefined ? data.next_cursor || null : c));
      setMissing(false);
      return data;
    } catch (e) {
      if (e.status === 404) setMissing(true);
      else setError(e.status === 0 ? t('error.network') : t('error.generic', { message: e.message }));
      return null;
    }
  };

  useEffect(() => {
    setRecent([]);
    setEarlier([]);
    setEarlierCursor(undefined);
  }, [id]);
  usePoll(load, POLL_MS, [id]);

  const loadEarlier = async () => {
    if (!earlierCursor) return;
    setLoadingEarlier(true);
    try {
      const { data } = await api('GET', '/tickets/' + encodeURIComponent(id) + '?cursor=' + encodeURIComponent(earlierCursor));
      setEarlier((older) => data.messages.concat(older));
      setEarlierCursor(data.next_cursor || null);
    } catch (e) {
      setError(t('error.generic', { message: e.message }));
    } finally {
      setLoadingEarlier(false);
    }
  };

  // The team's ids, offered in the assignee box, so a hand-picked assignee is a real agent.
  const [agents, setAgents] = useState([]);
  useEffect(() => {
    api('GET', '/agents').then(({ data }) => setAgents(data.agents), () => {});
  }, []);
  useEffect(() => {
    if (view) setAssignee(view.ticket.assignee || '');
  }, [view && view.ticket.version]);

  // A reopen refused because the customer has another active ticket is no stale copy:
  // reloading would not help, so it says where the customer's conversation is.
  const failed = (e) => {
    if (e.code === 'active_ticket_exists') setError(t('ticket.active_elsewhere', { message: e.message }));
    else if (e.status === 409) setConflict(true);
    else setError(t('error.generic', { message: e.message }));
  };

  /** Sends a change with the version on screen; a 409 never overwrites, it asks to reload. */
  const change = async (patch) => {
    setError(null);
    setNotice(null);
    try {
      const { data } = await api('PATCH', '/tickets/' + encodeURIComponent(id), {
        body: patch,
        ifMatch: view.ticket.version,
      });
      setView({ ...view, ticket: data });
      setConflict(false);
    } catch (e) {
      failed(e);
    }
  };

  const reload = async () => {
    setConflict(false);
    setError(null);
    await load();
  };

  const post = async (path, body, done) => {
    setBusy(true);
    setError(null);
    try {
      await api('POST', '/tickets/' + encodeURIComponent(id) + path, { body });
      if (done) setNotice(done);
      await load();
      return true;
    } catch (e) {
      failed(e);
      return false;
    } finally {
      setBusy(false);
    }
  };

  const useSuggestion = async (s) => {
    try {
      const { data } = await api('GET', '/kb/articles/' + encodeURIComponent(s.id));
      if (replyRef.current) {
        replyRef.current.value = data.answer;
        replyRef.current.dispatchEvent(new Event('input', { bubbles: true }));
        replyRef.current.focus();
      }
    } catch (e) {
      failed(e);
    }
  };

  if (missing) return html`<main class="ticket"><a href="#/tickets">${t('ticket.back')}</a><p role="alert">${t('ticket.not_found')}</p></main>`;
  if (!view) return html`<main class="ticket"><a href="#/tickets">${t('ticket.back')}</a><${Notice} kind="error">${error}<//></main>`;
  const tk = view.ticket;
  const customer = view.customer;
  const closed = tk.status === 'closed';

  return html`<main class="ticket">
    <a href="#/tickets">${t('ticket.back')}</a>
    <h1>${tk.subject}</h1>
    <p class="meta">
      <span class=${'pill status-' + tk.status}>${t('status.' + tk.status)}</span>
      <span class=${'pill priority-' + tk.priority}>${t('priority.' + tk.priority)}</span>
      <${SlaShort} ticket=${tk} />
      ${t('channel.' + tk.channel)} · <time datetime=${tk.created_at}>${when(tk.created_at)}</time>
    </p>
    ${conflict
      ? html`<div class="notice error" role="alert">${t('ticket.conflict')}
          <button onClick=${reload}>${t('ticket.reload')}</button></div>`
      : null}
    <${Notice} kind="error">${error}<//>
    <${Notice}>${notice}<//>
    <div class="ticket-body">
      <section class="conversation-pane">
        <h2>${t('ticket.conversation')}</h2>
        ${earlierCursor
          ? html`<button type="button" onClick=${loadEarlier} disabled=${loadingEarlier}>${t('ticket.load_earlier')}</button>`
          : null}
        <ol class="conversation" aria-label=${t('ticket.conversation')}>
          ${mergeMessages(earlier, recent).map((m) => html`<${Entry} key=${m.id} m=${m} />`)}
        </ol>
        ${tk.escalation_reason ? html`<p class="hint">${t('ticket.escalated_because', { reason: escalationReason(tk.escalation_reason) })}</p>` : null}
        ${closed
          ? html`<p class="hint">${t('ticket.closed_no_reply')}</p>`
          : html`<${Composer} label=${t('ticket.reply')} button=${t('ticket.send')} busy=${busy}
              textRef=${replyRef} focus=${focusReply}
              onSend=${(text) => post('/replies', { text }, t('ticket.sent_reply'))} />`}
        <${Composer} label=${t('ticket.note')} button=${t('ticket.add_note')} busy=${busy}
          onSend=${(text) => post('/notes', { text })} />
      </section>
      <aside class="side">
        <${SlaSection} ticket=${tk} />
        <section>
          <h2>${t('ticket.customer')}</h2>
          <p>${(customer && customer.name) || t('ticket.unnamed')}</p>
          <p class="hint">${tk.customer_id}</p>
          ${customer
            ? html`<ul aria-label=${t('ticket.identities')}>
                ${customer.identities.map((i) => html`<li>${t('channel.' + i.channel)}: ${i.external_id}</li>`)}
              </ul>`
            : null}
        </section>
        <section>
          <h2>${t('ticket.details')}</h2>
          <${Select} label=${t('filter.status')} value=${tk.status} options=${STATUSES} prefix="status." disabled=${closed}
            onChange=${(v) => change({ status: v })} />
          <${Select} label=${t('filter.priority')} value=${tk.priority} options=${PRIORITIES} prefix="priority."
            onChange=${(v) => change({ priority: v })} />
          <${Select} label=${t('filter.skill')} value=${tk.skill} options=${SKILLS} prefix="skill."
            onChange=${(v) => change({ skill: v })} />
          <form onSubmit=${(e) => { e.preventDefault(); change({ assignee: assignee.trim() || null }); }}>
            <label class="field"><span>${t('ticket.assignee')}</span>
              <input value=${assignee} placeholder=${t('ticket.nobody')} list="agent-ids" autocomplete="off"
                onInput=${(e) => setAssignee(e.currentTarget.value)} />
              <datalist id="agent-ids">${agents.map((a) => html`<option value=${a.id}>${a.name}</option>`)}</datalist>
            </label>
            <button type="submit">${t('ticket.save_assignee')}</button>
            <button type="button" onClick=${() => change({ assignee: me.name })}>${t('ticket.assign_me')}</button>
          </form>
        </section>
        <${AssignmentSection} ticket=${tk} />
        ${tk.suggestions && tk.suggestions.length
          ? html`<section>
              <h2>${t('ticket.suggestions')}</h2>
              <ul class="suggestions">
                ${tk.suggestions.map((s) => html`<li>
                  <button onClick=${() => useSuggestion(s)}>${t('ticket.use', { title: s.title })}</button>
                  <span class="hint">${t('kb.confidence', { value: s.confidence.toFixed(2) })}</span>
                </li>`)}
              </ul>
            </section>`
          : null}
        ${tk.survey && tk.survey.rating
          ? html`<section><h2>${t('ticket.survey')}</h2><p>${t('ticket.rating', { rating: tk.survey.rating })}</p>
              ${tk.survey.comment ? html`<p>${tk.survey.comment}</p>` : null}</section>`
          : null}
        ${tk.status !== 'escalated' && !closed
          ? html`<form onSubmit=${async (e) => {
                e.preventDefault();
                if (!reason.trim()) return;
                try {
                  const { data } = await api('POST', '/tickets/' + encodeURIComponent(id) + '/escalate', { body: { reason: reason.trim() } });
                  setView({ ...view, ticket: data });
                  setReason('');
                } catch (err) {
                  failed(err);
                }
              }}>
              <label class="field"><span>${t('ticket.reason')}</span>
                <input value=${reason} onInput=${(e) => setReason(e.currentTarget.value)} /></label>
              <button type="submit">${t('ticket.escalate')}</button>
            </form>`
          : null}
        ${supervisor
          ? html`<form onSubmit=${async (e) => {
                e.preventDefault();
                if (!mergeFrom.trim()) return;
                try {
                  await api('POST', '/customers/' + encodeURIComponent(tk.customer_id) + '/merge', { body: { from: mergeFrom.trim() } });
                  setMergeFrom('');
                  setNotice(t('ticket.merged'));
                  await load();
                } catch (err) {
                  failed(err);
                }
              }}>
              <label class="field"><span>${t('ticket.merge_from')}</span>
                <input value=${mergeFrom} onInput=${(e) => setMergeFrom(e.currentTarget.value)} /></label>
              <button type="submit">${t('ticket.merge')}</button>
            </form>`
          : null}
      </aside>
    </div>
  </main>`;
}
