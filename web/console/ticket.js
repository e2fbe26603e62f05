// One ticket: the conversation with its delivery states, the reply box (Enter sends, but
// never while an input method is composing), internal notes, the knowledge base's
// suggestions, changes sent with If-Match, escalation, and customer merge for supervisors.
// Keys, as the inbox's: r the reply box, n the note's, t the tag box, e the escalation's
// reason, u back to the tickets.
// A notice clears itself once it no longer holds: a lost connection at the next good load,
// a conflict (and what failed with it) once the page shows the newer version, and the note
// that followed the conflict once a yet newer one shows or its few seconds are up.

import { useEffect, useRef, useState } from 'preact/hooks';
import { html, usePoll, Notice, useNotice, isSendingEnter, isKeyForControl, KeysHint, Confirm, TicketRef, ticketRef, STATUSES, PRIORITIES, SKILLS } from './ui.js';
import { t, when } from './i18n.js';
import { api, newKey, query } from './api.js';
import { DRAFTS } from './auth.js';
import { AssignmentSection, SlaSection, SlaShort, escalationReason } from './assignment.js';
import { CustomerTickets } from './history.js';
import { useCanned } from './canned.js';
import { TagsSection } from './tags.js';

const POLL_MS = 3000;

/** The article's answer in the customer's language when it has one, else its own. */
function answerFor(article, language) {
  if (language && article.locale !== language && article.answers && article.answers[language]) {
    return article.answers[language];
  }
  return article.answer;
}

/** What one change did, in the reader's language. */
function activityText(a) {
  switch (a.what) {
    case 'opened':
      return t('activity.opened', { channel: t('channel.' + a.channel) });
    case 'status':
      return t('activity.status', { from: t('status.' + a.from), to: t('status.' + a.to) });
    case 'priority':
      return t('activity.priority', { from: t('priority.' + a.from), to: t('priority.' + a.to) });
    case 'skill':
      return t('activity.skill', { from: t('skill.' + a.from), to: t('skill.' + a.to) });
    case 'assigned':
      return a.to ? t('activity.assigned', { to: a.to, how: t('assign.how.' + (a.reason || 'manual')) }) : t('activity.unassigned');
    case 'tags':
      return [
        a.added && a.added.length ? t('activity.tags_added', { tags: a.added.join(', ') }) : null,
        a.removed && a.removed.length ? t('activity.tags_removed', { tags: a.removed.join(', ') }) : null,
      ].filter(Boolean).join('; ');
    case 'escalated':
      return t('activity.escalated', { reason: escalationReason(a.reason) });
    case 'reopened':
      return t('activity.reopened');
    case 'merged':
      return t('activity.merged', { ref: ticketRef(a.into) });
    default:
      return a.what;
  }
}

/** Who made a change: its author (an agent), else the customer for what their message did
 * (opened the ticket, or reopened it), else the desk. */
function activityBy(m) {
  if (m.author) return t('activity.by', { name: m.author });
  const customers = (m.activity || []).some((a) => (a.what === 'opened' && a.by_customer) || a.what === 'reopened');
  return customers ? t('activity.by_customer') : t('activity.by_desk');
}

/** A change of the ticket, as one quiet line of its history: what it did, who did it, when. */
function ActivityEntry({ m }) {
  return html`<li class="entry kind-activity dir-internal">
    <span class="visually-hidden">${t('kind.activity')}: </span>
    <span class="entry-text">${(m.activity || []).map(activityText).join(' · ')}</span>
    <span class="hint"> — ${activityBy(m)}, <time datetime=${m.created_at}>${when(m.created_at)}</time></span>
  </li>`;
}

/** One entry of the conversation; `reopened` marks the customer's message that last
 * reopened the ticket, resolved (the ticket keeps that one), so the agent sees where the
 * conversation came back. */
function Entry({ m, reopened }) {
  if (m.kind === 'activity') return html`<${ActivityEntry} m=${m} />`;
  const outbound = m.direction === 'outbound';
  return html`<li class=${'entry kind-' + m.kind + ' dir-' + m.direction}>
    <div class="entry-head">
      <span class="who">${t('kind.' + m.kind)}${m.author ? ' · ' + m.author : ''}</span>
      <time datetime=${m.created_at}>${when(m.created_at)}</time>
      ${m.kind === 'note' ? html`<span>${t('ticket.note_private')}</span>` : null}
      ${reopened ? html`<span class="reopened">${t('ticket.reopened_here')}</span>` : null}
      ${outbound && m.status
        ? html`<span class=${'delivery delivery-' + m.status}>${t('delivery.' + m.status)}${m.error ? ': ' + m.error : ''}</span>`
        : null}
    </div>
    <div class="entry-text">${m.text}</div>
    ${m.attachment ? html`<div class="hint">${m.attachment.kind || ''} ${m.attachment.media_id || ''}</div>` : null}
  </li>`;
}

/** A box's unsent text, kept for this tab under `key` (see auth.js's DRAFTS): it outlives
 * leaving the ticket, a reload, and a session that ended, until it is sent. */
function useDraft(key) {
  const [text, setText] = useState(() => (key && sessionStorage.getItem(key)) || '');
  const keep = (value) => {
    setText(value);
    if (!key) return;
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  };
  return [text, keep];
}

/** The `Idempotency-Key` a text is sent under, kept beside its draft until it is sent: a
 * send whose answer was lost (the connection dropped after the desk took it), sent again,
 * even after a reload, is taken once, and the customer gets one reply. A changed text is
 * another message, with another key. */
function sendKey(draftKey, value, fallback) {
  const saved = draftKey ? JSON.parse(sessionStorage.getItem(draftKey + '.key') || 'null') : fallback.current;
  if (saved && saved.text === value) return saved.key;
  const fresh = { text: value, key: newKey() };
  if (draftKey) sessionStorage.setItem(draftKey + '.key', JSON.stringify(fresh));
  else fallback.current = fresh;
  return fresh.key;
}

/** A text box that sends on Enter. `locked` (a closed ticket) sends nothing: the box goes,
 * unless it holds text the agent typed before the ticket closed, which stays to copy. */
function Composer({ label, button, onSend, focus, textRef, busy, locked, draftKey }) {
  const [text, setText] = useDraft(draftKey);
  const own = useRef(null);
  const pending = useRef(null);
  const ref = textRef || own;
  // `/` and a code puts a canned response in (canned.js); while its list is open, its keys
  // (Enter among them) are its own and send nothing.
  const canned = useCanned(ref, setText, locked);
  useEffect(() => {
    if (focus) ref.current?.focus();
  }, [focus]);
  const send = async () => {
    const value = (ref.current?.value ?? text).trim();
    if (!value || busy || locked) return;
    if (await onSend(value, sendKey(draftKey, value, pending))) {
      setText('');
      if (ref.current) ref.current.value = '';
      if (draftKey) sessionStorage.removeItem(draftKey + '.key');
      pending.current = null;
    }
  };
  if (locked && !text.trim()) return null;
  return html`<form class="composer" onSubmit=${(e) => { e.preventDefault(); send(); }}>
    <label class="field">
      <span>${label}</span>
      <textarea ref=${ref} rows="3" value=${text} readOnly=${locked} ...${canned.attrs}
        onInput=${(e) => { setText(e.currentTarget.value); canned.update(); }} onBlur=${canned.close}
        onClick=${canned.onCaret} onKeyUp=${canned.onCaret}
        onKeyDown=${(e) => { if (canned.onKeyDown(e)) return; if (isSendingEnter(e)) { e.preventDefault(); send(); } }}></textarea>
    </label>
    ${canned.popup}
    <div class="composer-foot"><span class="hint">${t('ticket.enter_hint')}</span>
      <button class="primary" type="submit" disabled=${busy || locked}>${button}</button></div>
  </form>`;
}

/** Why the ticket was escalated: said as the present while it is escalated, and as its past
 * once it moved on (resolved, closed, or back to an agent), with when, as a ticket's history
 * in Zendesk or Chatwoot keeps it: still worth knowing, but no longer its state. */
function Escalation({ ticket: tk }) {
  if (!tk.escalation_reason) return null;
  const reason = escalationReason(tk.escalation_reason);
  if (tk.status === 'escalated') return html`<p class="escalation">${t('ticket.escalated_because', { reason })}</p>`;
  return html`<p class="hint">${t('ticket.was_escalated', { when: tk.escalated_at ? when(tk.escalated_at) : '—', reason })}</p>`;
}

/** When a resolved ticket closes by itself (and its survey goes out), unless it is
 * reopened first, as Zendesk tells of a solved ticket. */
function ClosesAt({ ticket: tk }) {
  if (tk.status !== 'resolved' || !tk.closes_at) return null;
  return html`<p class="hint">${t('ticket.closes_at', { when: when(tk.closes_at) })}</p>`;
}

/**
 * A box of the ticket's details (status, priority, skill) that changes nothing by itself:
 * choosing in it, with the mouse or an arrow key, only marks the choice as not yet made,
 * and its button makes it, as Zendesk's "Submit as" and Chatwoot's Resolve do. A stray
 * arrow key therefore never closes a ticket, moves it, or sends the customer anything.
 * `onSet(value)` answers whether the change was made; the choice is dropped once the
 * ticket shows another value, or when `resetKey` changes.
 */
function ChangeBox({ label, button, current, options, prefix, disabled, onSet, boxRef, resetKey }) {
  const [choice, setChoice] = useState(null);
  const own = useRef(null);
  const box = boxRef || own;
  useEffect(() => setChoice(null), [current, resetKey]);
  // A box that goes off (the ticket closed meanwhile) shows the ticket's value, not a
  // choice that can no longer be made.
  const value = disabled ? current : choice ?? current;
  const pending = !disabled && choice !== null && choice !== current;
  const hintId = 'unsaved-' + prefix.replace(/\W/g, '');
  const submit = async (e) => {
    e.preventDefault();
    if (!pending || disabled) return;
    if (await onSet(choice)) {
      setChoice(null);
      // The button goes off once the box shows the ticket's value: focus stays in the box
      // rather than falling to the page.
      box.current?.focus();
    }
  };
  return html`<form class="change" onSubmit=${submit}>
    <label class="field">
      <span>${label}</span>
      <select ref=${box} value=${value} disabled=${disabled} aria-describedby=${pending ? hintId : undefined}
        onChange=${(e) => setChoice(e.currentTarget.value)}>
        ${options.map((o) => html`<option value=${o} selected=${o === value}>${t(prefix + o)}</option>`)}
      </select>
    </label>
    <button type="submit" disabled=${disabled || !pending}>${button}</button>
    ${pending ? html`<p id=${hintId} class="hint unsaved">${t('ticket.unsaved', { button })}</p>` : null}
  </form>`;
}

/** Asks before closing, which cannot be undone and sends the customer the survey: a modal
 * dialog, so the keyboard stays in it; Escape or Cancel leaves the ticket as it was. */
function ConfirmClose({ onConfirm, onCancel, busy }) {
  return html`<${Confirm} id="close" title=${t('ticket.close_title')} what=${t('ticket.close_what')}
    confirm=${t('ticket.close_confirm')} cancel=${t('ticket.close_cancel')} busy=${busy} onConfirm=${onConfirm} onCancel=${onCancel} />`;
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
  // The customer's exchange with the knowledge base before the ticket, which the desk
  // answers with the page that reaches the conversation's start.
  const [beforeTicket, setBeforeTicket] = useState([]);
  // Asked for once (`include=before_ticket`), not at each poll; a long conversation's
  // first page does not reach its start, and "Load earlier messages" asks for it then.
  const beforeAsked = useRef(false);
  const [missing, setMissing] = useState(false);
  // The version a change was refused at (409), until the page shows a newer one.
  const [conflict, setConflict] = useState(null);
  // A notice of something done; it goes by itself (see ui.js's useNotice). "It now shows
  // their change" holds for the version it was said at (`conflictShownAt`): a newer one, or
  // the agent's next action, takes it away sooner.
  const [notice, setNotice] = useNotice();
  const conflictShownAt = useRef(null);
  const say = (text, atVersion = null) => {
    conflictShownAt.current = atVersion;
    setNotice(text);
  };
  // Why the last load failed (the desk unreachable): cleared by the next good load.
  const [loadError, setLoadError] = useState(null);
  // Why the last action failed, with the version it was tried on: once a newer version
  // shows, the failure may no longer hold ("a closed ticket takes no replies") and goes.
  const [error, setErrorAt] = useState(null);
  const [busy, setBusy] = useState(false);
  const [assignee, setAssignee] = useState('');
  const [assigneeError, setAssigneeError] = useState(null);
  const [reason, setReason] = useState('');
  const [reasonMissing, setReasonMissing] = useState(false);
  const [mergeFrom, setMergeFrom] = useState('');
  const replyRef = useRef(null);
  const noteRef = useRef(null);
  const tagRef = useRef(null);
  const reasonRef = useRef(null);
  // Closing waits for the agent's yes (see ConfirmClose); a no puts the box back.
  const [confirmingClose, setConfirmingClose] = useState(false);
  const [statusReset, setStatusReset] = useState(0);
  const statusRef = useRef(null);
  const headingRef = useRef(null);
  const conversationRef = useRef(null);
  // Whether the agent is at the conversation's newest message (within a few pixels): a
  // poll's new messages keep it there; scrolled up to read, it stays where it is.
  const atBottom = useRef(true);
  // The ticket the page was last opened on: opening one (by Enter on its row, say) moves
  // the focus and the conversation's place once, and polls after it leave them to the
  // agent.
  const arrived = useRef(null);
  // The conversation's height before "Load earlier messages" grew it at the top.
  const heightBefore = useRef(null);
  const supervisor = me.role === 'supervisor' || me.role === 'admin';
  // The administrator takes no tickets (the desk refuses it as an assignee).
  const takesTickets = me.role !== 'admin';
  const version = view && view.ticket.version;
  const setError = (message) => setErrorAt(message ? { message, version } : null);

  const load = async () => {
    try {
      const asking = !beforeAsked.current;
      const { data } = await api('GET', '/tickets/' + encodeURIComponent(id) + (asking ? '?include=before_ticket' : ''));
      const shown = data.ticket.version;
      setView(data);
      setRecent((seen) => mergeMessages(seen, data.messages));
      setEarlierCursor((c) => (c === undefined ? data.next_cursor || null : c));
      if (asking) {
        beforeAsked.current = true;
        if (!data.next_cursor) setBeforeTicket(data.before_ticket || []);
      }
      setMissing(false);
      setLoadError(null);
      if (conflict !== null && shown > conflict) {
        setConflict(null);
        say(t('ticket.conflict_shown'), shown);
      } else if (conflictShownAt.current !== null && shown > conflictShownAt.current) {
        // "It now shows their change" holds for the version it was said of, no later one.
        say(null);
      }
      // A failure for want of the desk goes once it answers again; any other once a newer
      // version shows.
      setErrorAt((e) => (e && (e.unreachable || (e.version !== undefined && e.version !== null && shown > e.version)) ? null : e));
      return data;
    } catch (e) {
      if (e.status === 404) setMissing(true);
      else setLoadError(e.status === 0 ? t('error.network') : t('error.generic', { message: e.message }));
      return null;
    }
  };

  useEffect(() => {
    setRecent([]);
    setEarlier([]);
    setEarlierCursor(undefined);
    setBeforeTicket([]);
    beforeAsked.current = false;
    // Another ticket's notices and versions mean nothing here.
    setConflict(null);
    setErrorAt(null);
    setLoadError(null);
    say(null);
    setAssigneeError(null);
    setReasonMissing(false);
    setConfirmingClose(false);
  }, [id]);
  usePoll(load, POLL_MS, [id]);

  const loadEarlier = async () => {
    if (!earlierCursor) return;
    heightBefore.current = conversationRef.current ? conversationRef.current.scrollHeight : null;
    setLoadingEarlier(true);
    try {
      const { data } = await api('GET', '/tickets/' + encodeURIComponent(id) + '?include=before_ticket&cursor=' + encodeURIComponent(earlierCursor));
      setEarlier((older) => data.messages.concat(older));
      setEarlierCursor(data.next_cursor || null);
      if (!data.next_cursor) setBeforeTicket(data.before_ticket || []);
    } catch (e) {
      setError(t('error.generic', { message: e.message }));
    } finally {
      setLoadingEarlier(false);
    }
  };

  // Opened: the focus on the heading (or the reply box, by "r"), the conversation at its
  // newest message. Afterwards: new messages at the end keep the newest in view only for an
  // agent who was there; earlier ones loaded at the top keep what the agent was reading.
  const shownCount = earlier.length + recent.length;
  useEffect(() => {
    const box = conversationRef.current;
    if (!view || view.ticket.id !== id || !box) return;
    if (arrived.current !== id) {
      arrived.current = id;
      box.scrollTop = box.scrollHeight;
      atBottom.current = true;
      if (!focusReply) headingRef.current?.focus();
    } else if (heightBefore.current !== null) {
      box.scrollTop += box.scrollHeight - heightBefore.current;
      heightBefore.current = null;
    } else if (atBottom.current) {
      box.scrollTop = box.scrollHeight;
    }
  }, [view, shownCount]);

  // The page's keys (see the top): each puts the focus in its box, when the ticket has it
  // (a closed one has no reply, tag or escalation box).
  useEffect(() => {
    const boxes = { r: replyRef, n: noteRef, t: tagRef, e: reasonRef };
    const onKey = (e) => {
      if (isKeyForControl(e)) return;
      if (e.key === 'u') {
        e.preventDefault();
        location.hash = '#/tickets';
        return;
      }
      const box = boxes[e.key] && boxes[e.key].current;
      if (!box || box.disabled) return;
      e.preventDefault();
      box.focus();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  // The team's ids, offered in the assignee box, so a hand-picked assignee is a real agent
  // (not a removed one, whom the desk refuses).
  const [agents, setAgents] = useState([]);
  useEffect(() => {
    api('GET', '/agents').then(({ data }) => setAgents(data.agents), () => {});
  }, []);
  useEffect(() => {
    if (view) setAssignee(view.ticket.assignee || '');
    // A refused assignee is history once the ticket has moved on.
    setAssigneeError(null);
  }, [version]);

  // Where the customer's conversation went: their active ticket, linked by its reference.
  const elsewhere = async () => {
    let other = null;
    try {
      const q = query({ customer_id: view.ticket.customer_id, status: 'active' });
      other = (await api('GET', '/tickets' + q)).data.tickets.find((x) => x.id !== id) || null;
    } catch {
      /* said without the link */
    }
    setError(other
      ? html`${t('ticket.active_elsewhere')} <a href=${'#/tickets/' + encodeURIComponent(other.id)}>${t('ticket.open_other', { ref: ticketRef(other.id) })}</a>`
      : t('ticket.active_elsewhere'));
  };

  // A reopen refused because the customer has another active ticket is no stale copy:
  // reloading would not help, so it says where the customer's conversation is.
  const failed = (e) => {
    if (e.status === 0) setErrorAt({ message: t('error.unreachable'), version, unreachable: true });
    else if (e.code === 'active_ticket_exists') elsewhere();
    else if (e.status === 409) setConflict(version);
    else setError(t('error.generic', { message: e.message }));
  };

  /**
   * Sends a change with the version on screen; a 409 never overwrites, it asks to reload.
   * `refused`, when given, takes any other refusal's message, to show beside its control.
   */
  const change = async (patch, refused) => {
    setError(null);
    say(null);
    try {
      const { data } = await api('PATCH', '/tickets/' + encodeURIComponent(id), {
        body: patch,
        ifMatch: view.ticket.version,
      });
      setView({ ...view, ticket: data });
      setConflict(null);
      return true;
    } catch (e) {
      if (refused && e.status !== 409 && e.status !== 0) refused(e.message);
      else failed(e);
      return false;
    }
  };

  const setStatus = async (to) => {
    if (to === 'closed') {
      setConfirmingClose(true);
      return false;
    }
    return change({ status: to });
  };

  // Where the focus goes once the dialog has gone (while it is open the rest of the page
  // is inert): the heading after closing, since the status box goes off with it; the status
  // box after a no.
  const afterDialog = useRef(null);
  useEffect(() => {
    if (confirmingClose || !afterDialog.current) return;
    afterDialog.current.current?.focus();
    afterDialog.current = null;
  }, [confirmingClose]);

  const confirmClose = async () => {
    setBusy(true);
    const done = await change({ status: 'closed' });
    setBusy(false);
    if (done) say(t('ticket.closed_done'));
    afterDialog.current = done ? headingRef : statusRef;
    setConfirmingClose(false);
  };

  const cancelClose = () => {
    afterDialog.current = statusRef;
    setConfirmingClose(false);
    setStatusReset((n) => n + 1);
  };

  const assign = (who) => {
    setAssigneeError(null);
    return change({ assignee: who }, setAssigneeError);
  };

  const escalate = async () => {
    const why = reason.trim();
    if (!why) {
      setReasonMissing(true);
      reasonRef.current?.focus();
      return;
    }
    setError(null);
    try {
      const { data } = await api('POST', '/tickets/' + encodeURIComponent(id) + '/escalate', { body: { reason: why } });
      setView({ ...view, ticket: data });
      setReason('');
    } catch (err) {
      failed(err);
    }
  };

  const reload = async () => {
    setConflict(null);
    setError(null);
    say(null);
    await load();
  };

  const post = async (path, body, done, idempotencyKey) => {
    setBusy(true);
    setError(null);
    try {
      await api('POST', '/tickets/' + encodeURIComponent(id) + path, { body, idempotencyKey });
      if (done) say(done);
      // What the agent just sent is shown where it lands, at the end.
      atBottom.current = true;
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
      const { data } = await api('GET', '/kb/articles/' + encodeURIComponent(s.article_id));
      if (replyRef.current) {
        // After what the agent has typed, not over it.
        const typed = replyRef.current.value.trimEnd();
        const answer = answerFor(data, view.ticket.language);
        replyRef.current.value = typed ? typed + '\n\n' + answer : answer;
        replyRef.current.dispatchEvent(new Event('input', { bubbles: true }));
        replyRef.current.focus();
      }
    } catch (e) {
      failed(e);
    }
  };

  if (missing) return html`<main class="ticket"><a href="#/tickets">${t('ticket.back')}</a><p role="alert">${t('ticket.not_found')}</p></main>`;
  if (!view) return html`<main class="ticket"><a href="#/tickets">${t('ticket.back')}</a><${Notice} kind="error">${loadError}<//></main>`;
  const tk = view.ticket;
  const customer = view.customer;
  // A closed ticket takes no change, reply or escalation: its controls are off, not left to fail.
  const closed = tk.status === 'closed';

  return html`<main class="ticket">
    <a href="#/tickets">${t('ticket.back')}</a>
    <h1 ref=${headingRef} tabindex="-1">${tk.subject}</h1>
    <p class="meta">
      <span class=${'pill status-' + tk.status}>${t('status.' + tk.status)}</span>
      <span class=${'pill priority-' + tk.priority}>${t('priority.' + tk.priority)}</span>
      <${SlaShort} ticket=${tk} />
      <${TicketRef} id=${tk.id} /> · ${t('channel.' + tk.channel)} · <time datetime=${tk.created_at}>${when(tk.created_at)}</time>
    </p>
    ${conflict !== null
      ? html`<div class="notice error" role="alert">${t('ticket.conflict')}
          <button onClick=${reload}>${t('ticket.reload')}</button></div>`
      : null}
    <${Notice} kind="error">${loadError}<//>
    <${Notice} kind="error">${error && error.message}<//>
    <${Notice}>${notice}<//>
    <div class="ticket-body">
      <section class="conversation-pane">
        <h2>${t('ticket.conversation')}</h2>
        ${earlierCursor
          ? html`<button type="button" onClick=${loadEarlier} disabled=${loadingEarlier}>${t('ticket.load_earlier')}</button>`
          : null}
        <ol class="conversation" aria-label=${t('ticket.conversation')} ref=${conversationRef} tabindex="0"
          onScroll=${(e) => { const b = e.currentTarget; atBottom.current = b.scrollHeight - b.scrollTop - b.clientHeight < 24; }}>
          ${beforeTicket.length && !earlierCursor
            ? [html`<li key="before-ticket" class="before-ticket">${t('ticket.before_ticket')}</li>`,
              ...beforeTicket.map((m) => html`<${Entry} key=${m.id} m=${m} />`),
              html`<li key="ticket-opened" class="before-ticket">${t('ticket.ticket_opened')}</li>`]
            : null}
          ${mergeMessages(earlier, recent).map((m) => html`<${Entry} key=${m.id} m=${m} reopened=${m.id === tk.reopened_by} />`)}
        </ol>
        <${Escalation} ticket=${tk} />
        <${ClosesAt} ticket=${tk} />
        ${closed ? html`<p class="hint">${t('ticket.closed_no_reply')}</p>` : null}
        <${Composer} key=${'reply.' + id} label=${t('ticket.reply')} button=${t('ticket.send')} busy=${busy} locked=${closed}
          textRef=${replyRef} focus=${focusReply} draftKey=${DRAFTS + me.name + '.reply.' + id}
          onSend=${(text, key) => post('/replies', { text }, t('ticket.sent_reply'), key)} />
        <${Composer} key=${'note.' + id} label=${t('ticket.note')} button=${t('ticket.add_note')} busy=${busy} textRef=${noteRef}
          draftKey=${DRAFTS + me.name + '.note.' + id} onSend=${(text, key) => post('/notes', { text }, undefined, key)} />
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
          <${CustomerTickets} ticket=${tk} />
        </section>
        <section>
          <h2>${t('ticket.details')}</h2>
          <${ChangeBox} label=${t('filter.status')} button=${t('ticket.set_status')} current=${tk.status} prefix="status."
            options=${STATUSES.filter((s) => s !== 'escalated' || tk.status === 'escalated')} disabled=${closed}
            boxRef=${statusRef} resetKey=${statusReset} onSet=${setStatus} />
          <${ChangeBox} label=${t('filter.priority')} button=${t('ticket.set_priority')} current=${tk.priority} prefix="priority."
            options=${PRIORITIES} disabled=${closed} onSet=${(v) => change({ priority: v })} />
          <${ChangeBox} label=${t('filter.skill')} button=${t('ticket.set_skill')} current=${tk.skill} prefix="skill."
            options=${SKILLS} disabled=${closed} onSet=${(v) => change({ skill: v })} />
          <form onSubmit=${(e) => { e.preventDefault(); assign(assignee.trim() || null); }}>
            <label class="field"><span>${t('ticket.assignee')}</span>
              <input value=${assignee} placeholder=${t('ticket.nobody')} list="agent-ids" autocomplete="off" disabled=${closed}
                aria-invalid=${assigneeError ? 'true' : undefined} aria-describedby=${assigneeError ? 'assignee-error' : undefined}
                onInput=${(e) => { setAssignee(e.currentTarget.value); setAssigneeError(null); }} />
              <datalist id="agent-ids">${agents.filter((a) => !a.removed).map((a) => html`<option value=${a.id}>${a.name}</option>`)}</datalist>
            </label>
            ${assigneeError ? html`<p id="assignee-error" class="field-error" role="alert">${assigneeError}</p>` : null}
            ${!closed && agents.some((a) => a.removed && a.id === tk.assignee)
              ? html`<p class="hint">${t('ticket.assignee_removed', { name: tk.assignee })}</p>`
              : null}
            <button type="submit" disabled=${closed}>${t('ticket.save_assignee')}</button>
            ${takesTickets
              ? html` <button type="button" disabled=${closed || tk.assignee === me.name} onClick=${() => assign(me.name)}>${t('ticket.assign_me')}</button>`
              : null}
          </form>
        </section>
        <${TagsSection} ticket=${tk} closed=${closed} boxRef=${tagRef} onSet=${(tags, refused) => change({ tags }, refused)} />
        ${confirmingClose ? html`<${ConfirmClose} busy=${busy} onConfirm=${confirmClose} onCancel=${cancelClose} />` : null}
        <${AssignmentSection} ticket=${tk} />
        ${tk.suggestions && tk.suggestions.length
          ? html`<section>
              <h2>${t('ticket.suggestions')}</h2>
              <ul class="suggestions">
                ${(tk.suggestions || []).map((s) => html`<li key=${s.article_id}>
                  <button disabled=${closed} onClick=${() => useSuggestion(s)}>${t('ticket.use', { title: s.title })}</button>
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
          ? html`<form noValidate aria-labelledby="escalate-title" onSubmit=${(e) => { e.preventDefault(); escalate(); }}>
              <h2 id="escalate-title">${t('ticket.escalate_title')}</h2>
              <label class="field"><span>${t('ticket.reason')}</span>
                <input ref=${reasonRef} value=${reason} aria-invalid=${reasonMissing ? 'true' : undefined}
                  aria-describedby=${reasonMissing ? 'reason-error' : undefined}
                  onInput=${(e) => { setReason(e.currentTarget.value); setReasonMissing(false); }} /></label>
              ${reasonMissing ? html`<p id="reason-error" class="field-error" role="alert">${t('ticket.reason_needed')}</p>` : null}
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
                  say(t('ticket.merged'));
                  await load();
                } catch (err) {
                  // The one record a merge can miss is the customer named in the box.
                  if (err.code === 'not_found') setError(t('ticket.merge_unknown', { id: mergeFrom.trim() }));
                  else failed(err);
                }
              }}>
              <label class="field"><span>${t('ticket.merge_from')}</span>
                <input value=${mergeFrom} onInput=${(e) => setMergeFrom(e.currentTarget.value)} /></label>
              <button type="submit">${t('ticket.merge')}</button>
            </form>`
          : null}
      </aside>
    </div>
    <${KeysHint} keys=${t('ticket.keys')} />
  </main>`;
}
