// Shared pieces of the interface: the template tag, polling, and the labelled selects that
// every view uses.

import { h } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { t } from './i18n.js';

export const html = htm.bind(h);

/**
 * Runs `task` now and then every `ms` while the page is visible; a hidden tab costs
 * nothing. `deps` restart it, as for useEffect.
 */
export function usePoll(task, ms, deps) {
  const saved = useRef(task);
  saved.current = task;
  useEffect(() => {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      if (stopped) return;
      if (document.visibilityState !== 'hidden') {
        try {
          await saved.current();
        } catch (e) {
          /* shown by the task itself */
        }
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    tick();
    const wake = () => {
      if (document.visibilityState === 'visible' && !stopped) {
        clearTimeout(timer);
        tick();
      }
    };
    document.addEventListener('visibilitychange', wake);
    return () => {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', wake);
    };
  }, deps);
}

/**
 * An editor opened from a button far down a list takes the focus, in its first field that
 * can be typed in, so a keyboard user is in it. Before the browser paints (a layout effect):
 * a later focus would take the caret from a field the agent has already started typing in,
 * and their text would go into the first field.
 */
export function useFocusFirstField(ref) {
  useLayoutEffect(() => {
    ref.current?.querySelector('input:not([disabled]), textarea')?.focus();
  }, []);
}

/** A <select> with a visible label; `options` are values whose text is t(prefix + value). */
export function Select({ label, value, options, prefix, onChange, any, disabled, id }) {
  return html`<label class="field">
    <span>${label}</span>
    <select id=${id} value=${value || ''} disabled=${disabled} onChange=${(e) => onChange(e.currentTarget.value)}>
      ${any ? html`<option value="">${any}</option>` : null}
      ${options.map((o) => html`<option value=${o} selected=${o === value}>${prefix ? t(prefix + o) : o}</option>`)}
    </select>
  </label>`;
}

/** How long a notice of something done ("Reply queued", "Profile saved") stays: it goes by
 * itself, as a toast does in Zendesk or Chatwoot. An error stays until it no longer holds. */
export const NOTICE_MS = 8000;

/**
 * The state of a view's notice of something done: `[text, set]`, where the text clears
 * itself NOTICE_MS after it was set (the same text set again starts a new wait), and
 * set(null) clears it at once.
 */
export function useNotice() {
  const [notice, setNotice] = useState(null);
  useEffect(() => {
    if (!notice) return undefined;
    const timer = setTimeout(() => setNotice(null), NOTICE_MS);
    return () => clearTimeout(timer);
  }, [notice]);
  return [notice && notice.text, (text) => setNotice(text ? { text } : null)];
}

/** A message for a screen reader and the eye: polite by default, assertive for errors. */
export function Notice({ kind, children }) {
  if (!children) return null;
  return html`<div class=${'notice ' + (kind || 'info')} role=${kind === 'error' ? 'alert' : 'status'}>${children}</div>`;
}

/** True while an input method composes (Chinese, Japanese, Korean): the key picks a
 * candidate. Safari marks the Enter that ends a composition only by its keyCode 229. */
function isComposing(e) {
  return e.isComposing || e.keyCode === 229;
}

/** True when Enter should send: not while an input method is composing, and not with Shift,
 * which adds a line. */
export function isSendingEnter(e) {
  return e.key === 'Enter' && !e.shiftKey && !isComposing(e);
}

/** A one-line box's keydown handler: Enter does `action` (given the event), never while an
 * input method composes (Enter picks the candidate then) nor with Shift, and submits
 * nothing else. */
export function onEnter(action) {
  return (e) => {
    if (e.key !== 'Enter') return;
    e.preventDefault();
    if (isSendingEnter(e)) action(e);
  };
}

/** Enter in a one-line box while an input method composes picks the candidate, and must not
 * submit the box's form (a search, an escalation's reason, a tag). Installed once, for
 * every form of the console, by `app.js`. */
export function guardComposingEnter(e) {
  if (e.key === 'Enter' && isComposing(e) && e.target instanceof HTMLInputElement) e.preventDefault();
}

// Whether the one-character keys (j, k, r, /, …) are on: an agent who dictates, or types
// with a switch, turns them off, and a stray letter then does nothing (WCAG 2.1.4). Kept in
// this browser; on unless turned off.
const SHORTCUTS = 'helpdesk.shortcuts';
const shortcutsOn = () => localStorage.getItem(SHORTCUTS) !== 'off';

/** True when a key press is the focused control's, not a page shortcut's: typing in a box or
 * a select, any key in a dialog, a key with Ctrl, Cmd or Alt, or a one-character key while
 * they are turned off (Enter and Escape stay). A checkbox leaves the page its keys (the
 * inbox's x selects a row from it). */
export function isKeyForControl(e) {
  const tag = (e.target.tagName || '').toLowerCase();
  const typing = (tag === 'input' && e.target.type !== 'checkbox') || tag === 'textarea' || tag === 'select';
  const off = (e.key || '').length === 1 && !shortcutsOn();
  return typing || off || e.ctrlKey || e.metaKey || e.altKey || Boolean(e.target.closest?.('dialog'));
}

/** A view's line of keys (`keys`, shown while they are on), with the switch that turns the
 * one-character keys on and off, and what else the line says (`children`). */
export function KeysHint({ keys, children }) {
  const [on, setOn] = useState(shortcutsOn());
  const flip = (e) => {
    const next = e.currentTarget.checked;
    localStorage.setItem(SHORTCUTS, next ? 'on' : 'off');
    setOn(next);
  };
  return html`<p class="hint keys-hint">
    <label><input type="checkbox" checked=${on} onChange=${flip} /> ${t('keys.switch')}</label>
    ${on ? html` · ${keys}` : null}${children}
  </p>`;
}

export const STATUSES = ['open', 'pending', 'escalated', 'resolved', 'closed'];
export const PRIORITIES = ['low', 'normal', 'high', 'urgent'];
export const SKILLS = ['general', 'billing', 'technical'];
export const CHANNELS = ['webchat', 'whatsapp', 'telegram'];

/**
 * Asks before something that cannot be undone (closing tickets, deleting a canned
 * response): a modal dialog, so the keyboard stays in it, opened on Cancel; Escape or Cancel
 * does nothing. `id` names its title and text for assistive technology. While `busy`, the
 * confirm button says so and does nothing, but keeps the focus.
 */
export function Confirm({ id, title, what, confirm, cancel, onConfirm, onCancel, busy }) {
  const ref = useRef(null);
  const cancelRef = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open && dialog.showModal) dialog.showModal();
    cancelRef.current?.focus();
  }, []);
  return html`<dialog ref=${ref} class="confirm" aria-labelledby=${id + '-title'} aria-describedby=${id + '-what'}
      onCancel=${(e) => { e.preventDefault(); onCancel(); }}>
    <h2 id=${id + '-title'}>${title}</h2>
    <p id=${id + '-what'}>${what}</p>
    <div class="buttons">
      <button class="primary" type="button" aria-disabled=${busy ? 'true' : undefined}
        onClick=${() => { if (!busy) onConfirm(); }}>${confirm}</button>
      <button ref=${cancelRef} type="button" onClick=${onCancel}>${cancel}</button>
    </div>
  </dialog>`;
}

/**
 * The reference the customer is told ("Ticket: A86531F8"): the last 8 letters or digits of
 * the id, upper case. The same rule as `ticket_ref` in the core's format module, which
 * writes it into the hand-off message; agents search the inbox by it.
 */
export function ticketRef(id) {
  const tail = (id || '').replace(/[^0-9A-Za-z]/g, '').slice(-8);
  return tail.toUpperCase();
}

/** The reference, labelled, in monospace: "Ticket A86531F8". */
export function TicketRef({ id }) {
  return html`<span class="ticket-ref">${t('ticket.ref_label')} <code>${ticketRef(id)}</code></span>`;
}
