// Canned responses (saved replies), as Chatwoot has them: in a reply or note box, `/` at
// the start or after a space opens a list of the codes that match what follows it, and
// the one chosen puts its content in place of the `/code`. The view lists them; supervisors
// (and the administrator) add, edit and delete them, everyone else reads.

import { useEffect, useRef, useState } from 'preact/hooks';
import { html, Notice, useNotice, useFocusFirstField, Confirm } from './ui.js';
import { t } from './i18n.js';
import { api } from './api.js';

// The most options the list shows at once.
const SHOWN = 8;
// How long the list read for the reply boxes is used before it is read again.
const FRESH_MS = 30000;
// What an option shows of the content.
const SNIPPET = 60;

let cache = null;
let pending = null;

/** Every canned response, read again once FRESH_MS old, or at once when `fresh` (after a
 * change here: a read begun before the change is not taken for the list after it). */
function cannedList(fresh = false) {
  if (!fresh && cache && Date.now() - cache.at < FRESH_MS) return Promise.resolve(cache.items);
  if (fresh || !pending) {
    const read = api('GET', '/canned-responses').then(({ data }) => {
      if (pending === read) cache = { at: Date.now(), items: data.items };
      return data.items;
    });
    pending = read;
    read.finally(() => { if (pending === read) pending = null; }).catch(() => {});
  }
  return pending;
}

// The desk's fold (`word` in the core's domain): full-width ASCII, which a Chinese input
// method types in its full-width mode, as ASCII, then ASCII letters only to lower case:
// `Refund`, `refund` and `ｒｅｆｕｎｄ` are one code, `Ä` stays.
const fold = (s) => s
  .replace(/[\uFF01-\uFF5E]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xFEE0))
  .replace(/[A-Z]/g, (c) => c.toLowerCase());
// Characters as the desk counts them (code points), for cutting without splitting one.
const start = (s, n) => { const c = [...s]; return c.length > n ? c.slice(0, n).join('') + '…' : s; };

/** The `/code` being typed before the caret: {at, query}, or null. The slash may be the
 * full-width `／` an input method's full-width mode types (the code is folded as the desk
 * folds it). */
function trigger(box) {
  if (!box || box.readOnly || box.selectionStart !== box.selectionEnd) return null;
  const before = box.value.slice(0, box.selectionStart);
  const m = /(?:^|\s)[/／]([^\s/／]*)$/u.exec(before);
  return m ? { at: before.length - m[1].length - 1, query: m[1] } : null;
}

/** The responses that match `query`: codes that start with it, then codes that hold it,
 * then contents that hold it. */
function matching(items, query) {
  const q = fold(query);
  const lower = query.toLowerCase();
  const prefix = items.filter((c) => c.short_code.startsWith(q));
  const within = items.filter((c) => !c.short_code.startsWith(q) && c.short_code.includes(q));
  const content = lower
    ? items.filter((c) => !c.short_code.includes(q) && c.content.toLowerCase().includes(lower))
    : [];
  return [...prefix, ...within, ...content].slice(0, SHOWN);
}

let boxes = 0;

/**
 * The `/` list of a text box, as an ARIA combobox whose focus stays in the box: the box
 * gets `attrs` (aria-expanded, aria-controls, aria-activedescendant) and calls `update`
 * on input, `onKeyDown` first on each key (true: the key was the list's), `onCaret` on
 * click and key up, and `close` on blur; `popup` is the listbox, to render after it.
 * `setText` is the box's own state; a `locked` box has no list.
 * While an input method composes, no key is the list's.
 */
export function useCanned(ref, setText, locked) {
  const id = useRef(null);
  if (!id.current) id.current = 'canned-list-' + ++boxes;
  // Null until the list is read: read as the box appears, so that a `/code` typed at once
  // finds it.
  const [items, setItems] = useState(cache ? cache.items : null);
  const [open, setOpen] = useState(null);
  const [active, setActive] = useState(0);
  // The `/` that Escape closed the list of: typing on after it does not open it again.
  const dismissed = useRef(null);
  useEffect(() => {
    cannedList().then(setItems, () => setItems((had) => had || []));
  }, []);
  // A box that becomes read-only (its ticket closed meanwhile) closes its list.
  useEffect(() => {
    if (locked) setOpen(null);
  }, [locked]);

  const options = open && items && !locked ? matching(items, open.query) : [];
  const expanded = options.length > 0;
  const current = Math.min(active, options.length - 1);

  const update = () => {
    const found = trigger(ref.current);
    if (!found || found.at === dismissed.current) {
      if (!found) dismissed.current = null;
      setOpen(null);
      return;
    }
    if (!open || open.query !== found.query) setActive(0);
    setOpen(found);
    cannedList().then(setItems, () => setItems((had) => had || []));
  };
  const close = () => setOpen(null);

  const insert = (c) => {
    const box = ref.current;
    const found = trigger(box);
    if (!box || !found) return close();
    const caret = box.selectionStart;
    const value = box.value.slice(0, found.at) + c.content + box.value.slice(caret);
    const after = found.at + c.content.length;
    box.value = value;
    setText(value);
    box.setSelectionRange(after, after);
    box.focus();
    setOpen(null);
  };

  const onKeyDown = (e) => {
    if (e.isComposing || e.keyCode === 229) return false;
    // A `/code` typed before the list is read: Enter waits for it, and sends nothing.
    if (!expanded && open && items === null && e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      return true;
    }
    if (!expanded) return false;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      const step = e.key === 'ArrowDown' ? 1 : -1;
      setActive((current + step + options.length) % options.length);
    } else if ((e.key === 'Enter' && !e.shiftKey) || (e.key === 'Tab' && !e.shiftKey)) {
      insert(options[current]);
    } else if (e.key === 'Escape') {
      dismissed.current = open.at;
      setOpen(null);
    } else {
      return false;
    }
    e.preventDefault();
    e.stopPropagation();
    return true;
  };

  const optionId = (i) => id.current + '-' + i;
  const attrs = {
    'aria-autocomplete': 'list',
    'aria-expanded': expanded ? 'true' : 'false',
    'aria-controls': expanded ? id.current : undefined,
    'aria-activedescendant': expanded ? optionId(current) : undefined,
  };
  const popup = expanded
    ? html`<ul class="canned-list" role="listbox" id=${id.current} aria-label=${t('canned.suggestions')}>
        ${options.map((c, i) => html`<li key=${c.short_code} id=${optionId(i)} role="option" aria-selected=${i === current ? 'true' : 'false'}
            class=${i === current ? 'active' : ''} onMouseDown=${(e) => e.preventDefault()} onClick=${() => insert(c)}>
            <strong>/${c.short_code}</strong> <span class="hint">${start(c.content, SNIPPET)}</span>
          </li>`)}
      </ul>`
    : null;
  // The caret moved without typing (a click, an arrow): the list follows it, or closes.
  const onCaret = (e) => {
    if (e.type === 'click' || ['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(e.key)) update();
  };
  return { attrs, update, onKeyDown, onCaret, close, popup };
}

/** Asks before deleting, as closing a ticket does: a modal dialog, Cancel focused;
 * Escape or Cancel keeps the response. */
function ConfirmDelete({ code, onConfirm, onCancel, busy }) {
  return html`<${Confirm} id="canned-delete" title=${t('canned.delete_title', { code })} what=${t('canned.delete_what')}
    confirm=${t('canned.delete_confirm')} cancel=${t('canned.cancel')} busy=${busy} onConfirm=${onConfirm} onCancel=${onCancel} />`;
}

function Editor({ initial, isNew, taken, onSaved, onCancel }) {
  const [code, setCode] = useState(initial.short_code);
  const [content, setContent] = useState(initial.content);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const own = useRef(null);
  useFocusFirstField(own);
  // A refusal is said, and the field it is about takes the focus.
  const refuse = (text, field) => {
    setError(text);
    own.current?.querySelector(field === 'code' && isNew ? 'input' : 'textarea')?.focus();
  };
  const save = async (e) => {
    e.preventDefault();
    if (busy) return;
    const folded = fold(code.trim());
    if (!folded) return refuse(t('canned.needs_both'), 'code');
    if (!content.trim()) return refuse(t('canned.needs_both'), 'content');
    // A new one never replaces one that has its code (PUT would): not one listed here, nor
    // one another supervisor made since (`If-None-Match: *`, which the desk refuses then).
    if (isNew && taken.includes(folded)) return refuse(t('canned.code_taken', { code: folded }), 'code');
    setBusy(true);
    try {
      const { data } = await api('PUT', '/canned-responses/' + encodeURIComponent(folded),
        { body: { content }, etag: isNew ? '*' : undefined });
      onSaved(data);
    } catch (err) {
      if (err.code === 'canned_response_exists') return refuse(t('canned.code_taken', { code: folded }), 'code');
      refuse(t('error.generic', { message: err.message }), err.code === 'invalid_short_code' ? 'code' : 'content');
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="editor" ref=${own} aria-labelledby="canned-editor-title" onSubmit=${save}
      onKeyDown=${(e) => { if (e.key === 'Escape') onCancel(); }}>
    <h2 id="canned-editor-title">${isNew ? t('canned.new') : t('canned.editing', { code: initial.short_code })}</h2>
    <label class="field"><span>${t('canned.code')}</span>
      <input value=${code} disabled=${!isNew} aria-describedby="canned-code-rule" onInput=${(e) => setCode(e.currentTarget.value)} /></label>
    <p id="canned-code-rule" class="hint">${t('canned.code_rule')}</p>
    <label class="field"><span>${t('canned.content')}</span>
      <textarea rows="5" value=${content} onInput=${(e) => setContent(e.currentTarget.value)}></textarea></label>
    <${Notice} kind="error">${error}<//>
    <div class="buttons">
      <button class="primary" type="submit">${t('canned.save')}</button>
      <button type="button" onClick=${onCancel}>${t('canned.cancel')}</button>
    </div>
  </form>`;
}

export function CannedResponses({ me }) {
  const [items, setItems] = useState(null);
  const [search, setSearch] = useState('');
  const [editing, setEditing] = useState(null);
  const [deleting, setDeleting] = useState(null);
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useNotice();
  const [error, setError] = useState(null);
  const supervisor = me.role === 'supervisor' || me.role === 'admin';
  // The button the editor or the dialog was opened from: the focus goes back to it.
  const openedFrom = useRef(null);
  const heading = useRef(null);
  const opener = (e) => { openedFrom.current = e.currentTarget; setNotice(null); };
  const refocus = () => (openedFrom.current?.isConnected ? openedFrom.current : heading.current)?.focus();
  // While the dialog is open the rest of the page is inert: the focus goes back once it
  // has gone (to the heading when its button went with the response).
  const afterDialog = useRef(false);
  useEffect(() => {
    if (deleting || !afterDialog.current) return;
    afterDialog.current = false;
    refocus();
  }, [deleting]);
  const endDialog = () => {
    afterDialog.current = true;
    setDeleting(null);
  };

  const load = async () => {
    try {
      const list = await cannedList(true);
      setItems(list);
      setError(null);
    } catch (e) {
      setError(t('error.generic', { message: e.message }));
    }
  };
  useEffect(() => { load(); }, []);

  const saved = async (c) => {
    setEditing(null);
    setNotice(t('canned.saved', { code: c.short_code }));
    await load();
    refocus();
  };
  const remove = async () => {
    setBusy(true);
    try {
      await api('DELETE', '/canned-responses/' + encodeURIComponent(deleting));
      setNotice(t('canned.deleted', { code: deleting }));
      await load();
    } catch (e) {
      setError(t('error.generic', { message: e.message }));
    } finally {
      setBusy(false);
      endDialog();
    }
  };

  const needle = search.trim().toLowerCase();
  const shown = (items || []).filter(
    (c) => !needle || c.short_code.toLowerCase().includes(needle) || c.content.toLowerCase().includes(needle),
  );

  return html`<main class="canned">
    <h1 ref=${heading} tabindex="-1">${t('canned.title')}</h1>
    <p class="hint">${t('canned.how')}</p>
    <${Notice} kind="error">${error}<//>
    <${Notice}>${notice}<//>
    ${editing
      ? html`<${Editor} key=${editing.isNew ? 'new' : 'edit.' + editing.c.short_code} initial=${editing.c} isNew=${editing.isNew}
          taken=${(items || []).map((c) => c.short_code)} onSaved=${saved}
          onCancel=${() => { setEditing(null); refocus(); }} />`
      : null}
    <div class="kb-head">
      <label class="field search"><span>${t('canned.search')}</span>
        <input type="search" value=${search} onInput=${(e) => setSearch(e.currentTarget.value)} /></label>
      ${supervisor
        ? html`<button onClick=${(e) => { opener(e); setEditing({ c: { short_code: '', content: '' }, isNew: true }); }}>${t('canned.add')}</button>`
        : html`<p class="hint">${t('canned.readonly')}</p>`}
    </div>
    ${items && items.length === 0 ? html`<p class="empty">${t('canned.none')}</p>` : null}
    ${items && items.length > 0 && shown.length === 0 ? html`<p class="empty">${t('canned.no_match')}</p>` : null}
    <ul class="articles" aria-label=${t('canned.list')}>
      ${shown.map((c) => html`<li key=${c.short_code}>
        <div><strong>/${c.short_code}</strong></div>
        <p class="answer">${start(c.content, 200)}</p>
        ${supervisor
          ? html`<button onClick=${(e) => { opener(e); setEditing({ c, isNew: false }); window.scrollTo(0, 0); }}>${t('canned.edit', { code: c.short_code })}</button>
              <button onClick=${(e) => { opener(e); setDeleting(c.short_code); }}>${t('canned.delete', { code: c.short_code })}</button>`
          : null}
      </li>`)}
    </ul>
    ${deleting ? html`<${ConfirmDelete} code=${deleting} busy=${busy} onConfirm=${remove} onCancel=${endDialog} />` : null}
  </main>`;
}
