// Tickets' tags, as Zendesk's tags and Chatwoot's labels: the ticket view's Tags group (each
// tag a link to the tickets that carry it, with its remove button, and a box that adds one),
// the chips on an inbox row, and the tags seen on loaded tickets, offered as a datalist
// wherever a tag is typed. What a tag may be is the desk's rule (it folds and refuses): the
// console only trims the box and drops one leading "#", and says the desk's refusal in the
// reader's language.

import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { html, onEnter } from './ui.js';
import { t } from './i18n.js';

/** The id of the datalist of known tags (one per view: the inbox or the ticket). */
export const KNOWN_TAGS = 'known-tags';
/** How many chips an inbox row shows; the rest are counted ("+2"). */
const ROW_CHIPS = 3;

/** The tag a box holds, as the console sends it: trimmed, one leading "#" (or "＃")
 * dropped; '' for nothing. The desk does the rest (folding, refusing). */
export function typedTag(raw) {
  const trimmed = (raw || '').trim();
  return trimmed.replace(/^[#＃]/, '').trim();
}

// The tags seen on the tickets loaded in this page, for the datalist; no request of its own.
const seen = new Set();
const listeners = new Set();

/** Notes the tags of `tickets` (each with its `tags`) for the datalist. */
export function noteTags(tickets) {
  let grew = false;
  for (const tk of tickets || []) {
    for (const tag of tk.tags || []) {
      if (!seen.has(tag)) {
        seen.add(tag);
        grew = true;
      }
    }
  }
  if (grew) listeners.forEach((f) => f());
}

/** The datalist of the tags seen so far, kept current. */
export function KnownTags() {
  const [, setCount] = useState(seen.size);
  useEffect(() => {
    const f = () => setCount(seen.size);
    listeners.add(f);
    return () => listeners.delete(f);
  }, []);
  return html`<datalist id=${KNOWN_TAGS}>${[...seen].sort().map((tag) => html`<option value=${tag} />`)}</datalist>`;
}

/** A row's tags as chips (text, not only colour): the first few and how many more. */
export function TagChips({ tags }) {
  if (!tags || !tags.length) return null;
  const rest = tags.length - ROW_CHIPS;
  return html`<span class="tags">
    <span class="visually-hidden">${t('tags.row')}</span>
    ${tags.slice(0, ROW_CHIPS).map((tag) => html`<span class="pill tag">${tag}</span>`)}
    ${rest > 0 ? html`<span class="pill tag more" title=${t('tags.more', { count: rest })}><span aria-hidden="true">+${rest}</span><span class="visually-hidden">${t('tags.more', { count: rest })}</span></span>` : null}
  </span>`;
}

/** Where a tag's link goes: the inbox, with its Tag filter set to the tag (app.js reads the
 * tag back, the inbox applies it and tidies the URL). Encoded, so any script's tag travels. */
function tagHref(tag) {
  return '#/tickets?tag=' + encodeURIComponent(tag);
}

/**
 * The ticket view's Tags group. `onSet(tags, refused)` sends all the ticket's tags (one
 * PATCH with the version shown, by the ticket view's `change`, which handles a conflict) and
 * answers whether the desk took them; `refused(message)` hears any other refusal, said beside
 * the box. Each tag is a link to the inbox filtered by it, a closed ticket's too; a closed
 * ticket's tags are otherwise read only. After an add the focus stays in the box;
 * after a remove it goes to the box (the button has gone). `boxRef`, if given, is the box's
 * ref (the ticket view's t key focuses it).
 */
export function TagsSection({ ticket: tk, closed, onSet, boxRef }) {
  const tags = tk.tags || [];
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const busy = useRef(false);
  const own = useRef(null);
  const box = boxRef || own;
  useEffect(() => noteTags([tk]), [tk.id, tk.version]);
  useEffect(() => {
    setText('');
    setError(null);
  }, [tk.id]);

  const send = async (next) => {
    if (busy.current) return false;
    busy.current = true;
    setError(null);
    try {
      return await onSet(next, setError);
    } finally {
      busy.current = false;
    }
  };
  const add = async () => {
    const tag = typedTag(box.current ? box.current.value : text);
    box.current?.focus();
    if (!tag) return;
    if (tags.includes(tag)) {
      setText('');
      return;
    }
    if (await send([...tags, tag])) setText('');
    box.current?.focus();
  };
  const remove = async (tag) => {
    const done = await send(tags.filter((x) => x !== tag));
    if (done) box.current?.focus();
  };

  return html`<section class="tags-group" aria-labelledby="tags-title">
    <h2 id="tags-title">${t('tags.title')}</h2>
    ${tags.length
      ? html`<ul class="tag-list" aria-label=${t('tags.list')}>
          ${tags.map((tag) => html`<li key=${tag}><a class="pill tag" href=${tagHref(tag)} aria-label=${t('tags.link', { tag })}
              title=${t('tags.link', { tag })}>${tag}</a>
            ${closed ? null : html`<button type="button" class="remove-tag" aria-label=${t('tags.remove', { tag })}
              onClick=${() => remove(tag)}>×</button>`}</li>`)}
        </ul>`
      : html`<p class="hint">${t('tags.none')}</p>`}
    ${closed
      ? null
      : html`<form class="change" onSubmit=${(e) => { e.preventDefault(); add(); }}>
          <label class="field"><span>${t('tags.add_label')}</span>
            <input ref=${box} value=${text} list=${KNOWN_TAGS} autocomplete="off"
              aria-invalid=${error ? 'true' : undefined} aria-describedby=${error ? 'tag-error' : undefined}
              onInput=${(e) => { setText(e.currentTarget.value); setError(null); }}
              onKeyDown=${onEnter(add)} />
          </label>
          <button type="submit">${t('tags.add')}</button>
          ${error ? html`<p id="tag-error" class="field-error" role="alert">${error}</p>` : null}
        </form>`}
    <${KnownTags} />
  </section>`;
}

/**
 * The inbox's Tag filter: a box applied on Enter (not while composing) or on change, empty
 * for none. `value` is the tag applied, `onApply(tag)` applies one, and `error` is the
 * desk's refusal of it, said beside the box.
 */
export function TagFilter({ value, onApply, error }) {
  const [text, setText] = useState(value || '');
  // The box follows a tag applied from elsewhere (cleared, or the one kept from the last
  // visit), before the browser paints and never over what names the applied tag already
  // (`#VIP` stays as typed): a later reset would take what the agent began typing next.
  useLayoutEffect(() => {
    if (typedTag(text) !== (value || '')) setText(value || '');
  }, [value]);
  const apply = (raw) => {
    const tag = typedTag(raw);
    if (tag !== (value || '')) onApply(tag);
  };
  return html`<div class="tag-filter">
    <label class="field"><span>${t('tags.filter')}</span>
      <input type="search" value=${text} list=${KNOWN_TAGS} autocomplete="off"
        aria-invalid=${error ? 'true' : undefined} aria-describedby=${error ? 'tag-filter-error' : undefined}
        onInput=${(e) => setText(e.currentTarget.value)}
        onChange=${(e) => apply(e.currentTarget.value)}
        onKeyDown=${onEnter((e) => apply(e.currentTarget.value))} />
    </label>
    ${error ? html`<p id="tag-filter-error" class="field-error" role="alert">${error}</p>` : null}
  </div>`;
}
