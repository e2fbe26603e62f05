// Who holds a ticket and the clock it runs against: the assignee with how they got it
// (the desk's rule, a person, or a rebalance), and the SLA targets with their state. The
// inbox shows the short forms in each row, the ticket view the full ones. A state is always
// written out in words (and a sign), never told by colour alone.

import { html } from './ui.js';
import { t, when, lang } from './i18n.js';

/** The SLA targets in the order a ticket meets them. */
export const TARGETS = ['first_response', 'next_reply', 'resolution'];
const SOON_MS = 15 * 60 * 1000;

/** "in 5 minutes", "3 hours ago", in the console's language. */
export function relative(iso, now = Date.now()) {
  const secs = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(secs);
  // A unit that rounds up to the next one is the next one: "in 1 hour", not "in 60 minutes".
  const [unit, size] =
    abs < 59.5 ? ['second', 1] : abs < 3570 ? ['minute', 60] : abs < 84600 ? ['hour', 3600] : ['day', 86400];
  return new Intl.RelativeTimeFormat(lang(), { numeric: 'auto' }).format(Math.round(secs / size), unit);
}

function met(tk, target) {
  if (target === 'first_response') return !!tk.first_response_at;
  return tk.status === 'resolved' || tk.status === 'closed';
}

/**
 * When `target` is due. The next reply is a target of the customer's current wait only
 * (`awaiting_reply_since`): none while nobody waits, as a reply ends the wait.
 */
function dueOf(tk, target) {
  const sla = tk.sla;
  if (!sla) return null;
  if (target !== 'next_reply') return sla[target + '_due'] || null;
  const waiting = tk.awaiting_reply_since && sla.next_reply_since === tk.awaiting_reply_since;
  return waiting ? sla.next_reply_due || null : null;
}

/**
 * The state of one target: null without a due time, else { due, state } where state is
 * `breached` (recorded by the desk), `met`, `overdue` (past due, the desk has not yet
 * noticed), `due_soon` (within 15 minutes) or `on_track`.
 */
export function targetState(tk, target, now = Date.now()) {
  const due = dueOf(tk, target);
  if (!due) return null;
  // A ticket may miss its next reply once per wait: the current wait's breach counts here.
  const breach = tk.sla.breaches?.find((b) => b.target === target && (target !== 'next_reply' || b.since === tk.awaiting_reply_since));
  let state;
  if (breach) state = 'breached';
  else if (met(tk, target)) state = 'met';
  else if (new Date(due).getTime() <= now) state = 'overdue';
  else if (new Date(due).getTime() - now <= SOON_MS) state = 'due_soon';
  else state = 'on_track';
  return { due, state, breach };
}

const SIGN = { breached: '⚠ ', overdue: '⚠ ', due_soon: '⏱ ', met: '✓ ', on_track: '' };

/** When the ticket's earliest unmet target is (was) due, in ms; Infinity when none is. */
export function nextDue(tk) {
  const open = tk.status !== 'resolved' && tk.status !== 'closed';
  const dues = TARGETS.map((target) => targetState(tk, target))
    .filter((s) => s && s.state !== 'met' && open)
    .map((s) => new Date(s.due).getTime());
  return dues.length ? Math.min(...dues) : Infinity;
}

/**
 * Since when the customer has waited for the agents, as the desk says (`waiting_since`: the
 * rule is the desk's, not restated here). Null when nobody waits: answered, waiting on the
 * customer (pending), or ended.
 */
export function waitingSince(tk) {
  return tk.waiting_since || null;
}

/** An inbox row's "Awaiting reply · 12 minutes ago": the customer spoke last. */
export function AwaitingShort({ ticket: tk, now = Date.now() }) {
  const since = waitingSince(tk);
  if (!since) return null;
  return html`<span class="pill awaiting">${t('inbox.awaiting', { ago: relative(since, now) })}</span>`;
}

/** How the assignee got the ticket, in a sentence. */
export function assignedText(tk) {
  if (!tk.assignee) return t('assign.waiting');
  const name = tk.assignee;
  const { reason, by } = tk.assignment || {};
  if (reason === 'rebalance') return t('assign.rebalance', { name });
  if (reason === 'manual' && by === name) return t('assign.self', { name });
  if (reason === 'manual' && by) return t('assign.by_agent', { name, by });
  if (reason === 'rule') return t('assign.by_rule', { name });
  return t('assign.to', { name });
}

/** The assignee and how, short, for an inbox row: "alice (rule)". */
export function AssigneeShort({ ticket: tk }) {
  if (!tk.assignee) return html`<span class="assignee">${t('ticket.nobody')}</span>`;
  const reason = tk.assignment && tk.assignment.reason;
  const how = reason ? t('assign.how.' + reason) : '';
  return html`<span class="assignee">${how ? t('assign.short', { name: tk.assignee, how }) : tk.assignee}</span>`;
}

/**
 * The one SLA fact an inbox row needs: a breach, else an overdue target, else the next due
 * time of a target still open. Nothing when the ticket has no targets left to watch.
 */
export function SlaShort({ ticket: tk, now = Date.now() }) {
  const states = TARGETS.map((target) => [target, targetState(tk, target, now)]).filter(([, s]) => s);
  const breached = states.find(([, s]) => s.state === 'breached');
  if (breached) {
    return html`<span class="pill sla-breached">${SIGN.breached}${t('sla.row.breached', { target: t('sla.' + breached[0]) })}</span>`;
  }
  const overdue = states.find(([, s]) => s.state === 'overdue');
  if (overdue) {
    return html`<span class="pill sla-overdue">${SIGN.overdue}${t('sla.row.overdue', { target: t('sla.' + overdue[0]) })}</span>`;
  }
  const next = states.find(([, s]) => s.state === 'due_soon' || s.state === 'on_track');
  if (!next || tk.status === 'resolved' || tk.status === 'closed') return null;
  const [target, s] = next;
  return html`<span class=${'pill sla-' + s.state}>${SIGN[s.state]}${t('sla.row.' + target, { when: relative(s.due, now) })}</span>`;
}

/** The ticket view's section: the assignee, how and when. */
export function AssignmentSection({ ticket: tk }) {
  return html`<section aria-labelledby="assignment-title">
    <h2 id="assignment-title">${t('assign.title')}</h2>
    <p>${assignedText(tk)}${tk.assigned_at
      ? html` · <time datetime=${tk.assigned_at}>${when(tk.assigned_at)}</time>`
      : null}</p>
    <p class="hint">${t('assign.language', { language: t('language.' + (tk.language || 'en')) })}</p>
  </section>`;
}

/** The ticket view's section: each target's due time and state, and the breaches. Nothing
 * when the ticket's priority has no targets, which is every ticket of a desk without SLAs. */
export function SlaSection({ ticket: tk, now = Date.now() }) {
  const rows = TARGETS.map((target) => [target, targetState(tk, target, now)]).filter(([, s]) => s);
  const breaches = (tk.sla && tk.sla.breaches) || [];
  if (rows.length === 0 && breaches.length === 0) return null;
  return html`<section aria-labelledby="sla-title">
    <h2 id="sla-title">${t('sla.title')}</h2>
    ${rows.length === 0
      ? null
      : html`<ul class="sla-targets" aria-label=${t('sla.targets')}>
          ${rows.map(([target, s]) => html`<li class=${'sla-' + s.state}>
            <strong>${t('sla.' + target)}</strong>
            <span> ${t('sla.due')} <time datetime=${s.due}>${when(s.due)}</time> (${relative(s.due, now)})</span>
            <span class=${'pill sla-' + s.state}>${SIGN[s.state]}${t('sla.state.' + s.state)}</span>
          </li>`)}
        </ul>`}
    ${breaches.length
      ? html`<h3 id="sla-breaches-title">${t('sla.breaches')}</h3>
          <ul class="sla-breaches" aria-labelledby="sla-breaches-title">
            ${breaches.map((b) => html`<li>${SIGN.breached}${t('sla.breach', { target: t('sla.' + b.target), due: when(b.due), at: when(b.at) })}</li>`)}
          </ul>`
      : null}
  </section>`;
}

/** An escalation reason as a person reads it: the desk's `sla_breach:<target>` in words. */
export function escalationReason(reason) {
  const m = /^sla_breach:(first_response|next_reply|resolution)$/.exec(reason || '');
  return m ? t('sla.reason.' + m[1]) : reason;
}
