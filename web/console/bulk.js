// Bulk actions in the inbox, as Zendesk's views and Chatwoot's conversation list have them:
// the selected tickets are assigned, moved to a status, given a priority or a tag together. Each
// change is one PATCH per ticket with the version the inbox shows (If-Match), a few at a
// time, so a ticket someone changed meanwhile is reported, never overwritten; closing asks
// first, as the ticket view's close does. One notice then says what happened to them all.

import { useEffect, useRef, useState } from 'preact/hooks';
import { html, Confirm, PRIORITIES, ticketRef, onEnter } from './ui.js';
import { t } from './i18n.js';
import { api } from './api.js';
import { KNOWN_TAGS, typedTag } from './tags.js';

/** How many changes are in flight at once. */
const IN_FLIGHT = 4;
/** The statuses a bulk change may set: escalated needs a reason, given per ticket. */
const STATUSES = ['open', 'pending', 'resolved', 'closed'];
/** No choice yet: Apply then sends nothing (a stray click never sets the first option). */
const CHOOSE = '';
/** The assignee choice that unassigns (no agent id holds a space: the Assignee box trims). */
const NOBODY = ' ';

/** `key` for one, `key` + "_many" for any other count, with {count} filled in. */
export function counted(key, count, vars) {
  return t(count === 1 ? key + '_one' : key + '_many', { count, ...vars });
}

/**
 * Sends `patch` (or `patch(ticket)`, one per ticket) to each ticket with the version it was
 * shown at, IN_FLIGHT at a time.
 * Returns one outcome per ticket, in the order given: `{ ticket, ok }` (the ticket as the
 * desk now has it), `{ ticket,
 * conflict }` (someone changed it first: the desk kept their change), or `{ ticket,
 * refused }` (the desk's reason, in the reader's language).
 */
export async function applyToAll(tickets, patch) {
  const outcomes = new Array(tickets.length);
  let next = 0;
  const worker = async () => {
    while (next < tickets.length) {
      const at = next;
      next += 1;
      const ticket = tickets[at];
      try {
        const body = typeof patch === 'function' ? patch(ticket) : patch;
        const { data } = await api('PATCH', '/tickets/' + encodeURIComponent(ticket.id), { body, ifMatch: ticket.version });
        outcomes[at] = { ticket: data || ticket, ok: true };
      } catch (e) {
        if (e.code === 'version_conflict' || e.status === 412) outcomes[at] = { ticket, conflict: true };
        else outcomes[at] = { ticket, refused: e.message };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, tickets.length) }, worker));
  return outcomes;
}

/** What the notice says of a run: its text, and whether everything went through. */
function Outcome({ outcomes }) {
  const done = outcomes.filter((o) => o.ok);
  const conflicts = outcomes.filter((o) => o.conflict);
  const refused = outcomes.filter((o) => o.refused !== undefined);
  if (!conflicts.length && !refused.length) return html`<p>${counted('bulk.updated', done.length)}</p>`;
  const parts = [counted('bulk.updated_short', done.length)];
  if (conflicts.length) {
    parts.push(counted('bulk.conflicts', conflicts.length, { refs: conflicts.map((o) => ticketRef(o.ticket.id)).join(t('bulk.list_sep')) }));
  }
  if (refused.length) parts.push(counted('bulk.refused', refused.length));
  return html`<p>${parts.join(t('bulk.part_sep'))}</p>
    ${refused.length
      ? html`<ul>${refused.map((o) => html`<li>${t('bulk.refused_ticket', { ref: ticketRef(o.ticket.id), reason: o.refused })}</li>`)}</ul>`
      : null}`;
}

/** Asks before closing `count` tickets: a modal dialog, so the keyboard stays in it;
 * Escape or Cancel closes nothing. */
function ConfirmBulkClose({ count, onConfirm, onCancel, busy }) {
  return html`<${Confirm} id="bulk-close" title=${counted('bulk.close_title', count)} what=${counted('bulk.close_what', count)}
    confirm=${counted('bulk.close_confirm', count)} cancel=${t('bulk.close_cancel')} busy=${busy} onConfirm=${onConfirm} onCancel=${onCancel} />`;
}

/** One bulk change: a labelled choice and its Apply button (the choice alone changes
 * nothing, and Apply before a choice sends nothing: it puts the focus on the choice). The
 * button is never disabled while a run goes on, so the focus stays on it. */
function BulkChange({ label, apply, options, busy, onApply, buttonRef }) {
  const [value, setValue] = useState(CHOOSE);
  const select = useRef(null);
  const submit = (e) => {
    e.preventDefault();
    if (busy) return;
    if (value === CHOOSE) select.current?.focus();
    else onApply(value);
  };
  return html`<form class="change" onSubmit=${submit}>
    <label class="field"><span>${label}</span>
      <select ref=${select} value=${value} onChange=${(e) => setValue(e.currentTarget.value)}>
        <option value=${CHOOSE} selected=${value === CHOOSE}>${t('bulk.choose')}</option>
        ${options.map((o) => html`<option value=${o.value} selected=${o.value === value}>${o.text}</option>`)}
      </select>
    </label>
    <button ref=${buttonRef} type="submit" aria-label=${apply} aria-disabled=${busy ? 'true' : undefined}>${t('bulk.apply')}</button>
  </form>`;
}

/** Adds a tag to each selected ticket: a box (with the tags seen, Enter applies but never
 * while an input method composes) and its Apply button. An empty box sends nothing and
 * keeps the focus in it; the box empties once every ticket took the tag. */
function BulkTag({ busy, onApply }) {
  const [text, setText] = useState('');
  const box = useRef(null);
  const submit = async () => {
    if (busy) return;
    const tag = typedTag(box.current ? box.current.value : text);
    if (!tag) {
      box.current?.focus();
      return;
    }
    const outcomes = await onApply(tag);
    if (outcomes.every((o) => o.ok)) setText('');
  };
  return html`<form class="change" onSubmit=${(e) => { e.preventDefault(); submit(); }}>
    <label class="field"><span>${t('bulk.tag')}</span>
      <input ref=${box} value=${text} list=${KNOWN_TAGS} autocomplete="off"
        onInput=${(e) => setText(e.currentTarget.value)}
        onKeyDown=${onEnter(submit)} />
    </label>
    <button type="submit" aria-label=${t('bulk.apply_tag')} aria-disabled=${busy ? 'true' : undefined}>${t('bulk.apply')}</button>
  </form>`;
}

/**
 * The bar over the inbox's list while tickets are selected. `tickets` are the selected
 * ones as the inbox shows them (their versions are what each change is sent with, and their
 * tags at those versions what Add tag adds to);
 * `onDone(outcomes)` hears how each went (the notice is the inbox's: it outlives the bar).
 */
export function BulkBar({ me, tickets, onDone }) {
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [agents, setAgents] = useState([]);
  const statusButton = useRef(null);
  useEffect(() => {
    api('GET', '/agents').then(({ data }) => setAgents(data.agents), () => {});
  }, []);

  const run = async (patch) => {
    setBusy(true);
    const outcomes = await applyToAll(tickets, patch);
    setBusy(false);
    onDone(outcomes);
    return outcomes;
  };

  // The same ids the ticket view's Assignee box offers: the signed-in agent (not the
  // administrator, who takes no tickets), the team's agents not removed, or nobody.
  const assignees = [
    ...(me.role !== 'admin' ? [{ value: me.name, text: t('bulk.me', { name: me.name }) }] : []),
    ...agents.filter((a) => !a.removed && a.id !== me.name).map((a) => ({ value: a.id, text: a.name && a.name !== a.id ? `${a.id} (${a.name})` : a.id })),
    { value: NOBODY, text: t('ticket.nobody') },
  ];

  const setStatus = (to) => {
    if (to === 'closed') setConfirming(true);
    else run({ status: to });
  };
  // While the dialog is open the rest of the page is inert; once it goes, the focus is
  // back on the status's Apply button.
  const afterDialog = useRef(false);
  useEffect(() => {
    if (confirming || !afterDialog.current) return;
    afterDialog.current = false;
    statusButton.current?.focus();
  }, [confirming]);

  const count = tickets.length;
  return html`<section class="bulk" role="region" aria-label=${counted('bulk.bar', count)}>
    <p class="bulk-count">${counted('bulk.selected', count)}</p>
    <${BulkChange} label=${t('bulk.assign')} apply=${t('bulk.apply_assign')} busy=${busy}
      options=${assignees}
      onApply=${(v) => run({ assignee: v === NOBODY ? null : v })} />
    <${BulkChange} label=${t('bulk.status')} apply=${t('bulk.apply_status')} busy=${busy} buttonRef=${statusButton}
      options=${STATUSES.map((s) => ({ value: s, text: t('status.' + s) }))} onApply=${setStatus} />
    <${BulkChange} label=${t('bulk.priority')} apply=${t('bulk.apply_priority')} busy=${busy}
      options=${PRIORITIES.map((p) => ({ value: p, text: t('priority.' + p) }))}
      onApply=${(v) => run({ priority: v })} />
    <${BulkTag} busy=${busy} onApply=${(tag) => run((tk) => ({ tags: [...(tk.tags || []), tag] }))} />
    ${confirming
      ? html`<${ConfirmBulkClose} count=${count} busy=${busy}
          onConfirm=${async () => { await run({ status: 'closed' }); afterDialog.current = true; setConfirming(false); }}
          onCancel=${() => { afterDialog.current = true; setConfirming(false); }} />`
      : null}
  </section>`;
}

/** The notice of the last run; polite, and focusable so the focus can land on it when the
 * bar it came from has gone. */
export function BulkNotice({ outcomes, noticeRef }) {
  return html`<div class=${outcomes ? 'notice bulk-notice' : 'bulk-notice'} role="status" tabindex="-1" ref=${noticeRef}>
    ${outcomes ? html`<${Outcome} outcomes=${outcomes} />` : null}
  </div>`;
}
