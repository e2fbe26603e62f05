// The knowledge base: articles with search, edit, create and delete (supervisors), and the
// "test a question" box that shows what auto-reply would do with a question right now.

import { useEffect, useRef, useState } from 'preact/hooks';
import { html, Notice, useNotice, useFocusFirstField } from './ui.js';
import { t, lang } from './i18n.js';
import { api } from './api.js';

const EMPTY = { id: '', title: '', questions: '', answer: '', locale: '', tags: '', answer_zh: '', answer_en: '' };
// The languages an article may also answer in (`answers` in the API).
const LANGUAGES = ['zh', 'en'];
// What an article id may be: 1 to 128 of A-Z a-z 0-9 _ - (the desk's `is_valid_id`).
const ID_RULE = /^[A-Za-z0-9_-]{1,128}$/;

// The limited fields, in the editor's order: where Save sends the focus first.
const LIMITED = ['title', 'questions', 'answer', ...LANGUAGES.map((l) => 'answer_' + l)];
// A field shows its count from this share of its limit on.
const NEAR = 0.8;
// Characters as the desk counts them: code points, so an emoji is one (length counts two).
const chars = (s) => [...s].length;
// A limited field's label, as the editor shows it.
const labelOf = (name) =>
  t(name === 'title' ? 'kb.article_title' : name.startsWith('answer_') ? 'kb.answer_in_' + name.slice(7) : 'kb.' + name);

/**
 * What the desk's limits (config.json's `article_limits`) say of the fields as they would
 * be sent (trimmed, blank questions dropped): {field: {text, over, line}} for those near or
 * over a limit, where `line` is the index of the first question that is too long.
 */
function measure(form, limits) {
  const notes = {};
  if (!limits) return notes;
  const num = (n) => n.toLocaleString(lang());
  const said = (key, used, limit, more) => t(key, { used: num(used), limit: num(limit), ...more });
  for (const name of LIMITED.filter((n) => n !== 'questions')) {
    const used = chars(form[name].trim());
    const limit = name === 'title' ? limits.text_chars : limits.answer_chars;
    if (used > limit) notes[name] = { over: true, text: said('kb.over', used, limit, { field: labelOf(name) }) };
    else if (used >= limit * NEAR) notes[name] = { text: said('kb.count', used, limit) };
  }
  const lengths = form.questions.split('\n').map((q) => chars(q.trim()));
  const count = lengths.filter((n) => n > 0).length;
  const line = lengths.findIndex((n) => n > limits.text_chars);
  // A loop, not Math.max(...lengths): a paste of some 100,000 lines would overflow the call.
  let longest = 0;
  lengths.forEach((n, i) => { if (n > lengths[longest]) longest = i; });
  const field = labelOf('questions');
  if (count > limits.questions) {
    notes.questions = { over: true, text: said('kb.over_questions', count, limits.questions, { field }) };
  } else if (line >= 0) {
    notes.questions = { over: true, line, text: said('kb.over_line', lengths[line], limits.text_chars, { field, line: line + 1 }) };
  } else {
    const near = [];
    if (count >= limits.questions * NEAR) near.push(said('kb.count_questions', count, limits.questions));
    if (lengths[longest] >= limits.text_chars * NEAR) near.push(said('kb.count_line', lengths[longest], limits.text_chars, { line: longest + 1 }));
    if (near.length) notes.questions = { text: near.join(' · ') };
  }
  return notes;
}

function toForm(a) {
  return {
    id: a.id,
    title: a.title,
    questions: a.questions.join('\n'),
    answer: a.answer,
    locale: a.locale || '',
    tags: (a.tags || []).join(', '),
    answer_zh: (a.answers && a.answers.zh) || '',
    answer_en: (a.answers && a.answers.en) || '',
  };
}

function Tester() {
  const [q, setQ] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const run = async (e) => {
    e.preventDefault();
    if (!q.trim()) return;
    try {
      const { data } = await api('GET', '/kb/search?limit=5&q=' + encodeURIComponent(q.trim()));
      setResult(data);
      setError(null);
    } catch (err) {
      setError(t('error.generic', { message: err.message }));
    }
  };
  // The section is a region named by its heading. One short line says what the desk would
  // do, politely announced (it is always there, so a new result is read out); the ranked
  // articles are a labelled list beside it, read when the agent goes to them.
  const summary = result
    ? [
        result.auto_reply
          ? t('kb.would_reply', { threshold: result.threshold })
          : t('kb.would_handoff', { threshold: result.threshold }),
        result.hits.length === 0 ? t('kb.no_hits') : result.hits.length === 1 ? t('kb.hit_one') : t('kb.hit_count', { count: result.hits.length }),
      ].join(' · ')
    : '';
  return html`<section class="tester" aria-labelledby="kb-test-title">
    <h2 id="kb-test-title">${t('kb.test')}</h2>
    <form onSubmit=${run}>
      <label class="field"><span>${t('kb.test')}</span>
        <input value=${q} onInput=${(e) => setQ(e.currentTarget.value)} /></label>
      <button class="primary" type="submit">${t('kb.run_test')}</button>
    </form>
    <${Notice} kind="error">${error}<//>
    <p aria-live="polite" class=${result ? (result.auto_reply ? 'verdict reply' : 'verdict handoff') : 'verdict'}>${summary}</p>
    ${result && result.hits.length
      ? html`<ol class="hits" aria-label=${t('kb.hits')}>
          ${result.hits.map((h) => html`<li key=${h.article_id}>
            <strong>${h.title}</strong> <span class="hint">${h.article_id}</span>
            <span class="pill">${t('kb.confidence', { value: h.confidence.toFixed(2) })}</span>
            <p>${h.answer}</p>
          </li>`)}
        </ol>`
      : null}
  </section>`;
}

function Editor({ initial, isNew, onSaved, onCancel, limits }) {
  const [form, setForm] = useState(initial);
  const [error, setError] = useState(null);
  const own = useRef(null);
  // The desk's limits, said at each field near or over one (a count, or what is over); the
  // one live region says only when the fields over a limit change, never at each key.
  const notes = measure(form, limits);
  const over = LIMITED.filter((n) => notes[n] && notes[n].over);
  const wasOver = useRef(false);
  const overSaid = over.length
    ? t('kb.over_fields', { fields: new Intl.ListFormat(lang()).format(over.map(labelOf)) })
    : wasOver.current ? t('kb.within') : '';
  wasOver.current = wasOver.current || over.length > 0;
  // Opened from a button far down the list, the editor takes the focus; Escape closes it.
  useFocusFirstField(own);
  const field = (name, label, multiline) => {
    const note = notes[name];
    const tied = {
      id: 'kb-' + name,
      'aria-invalid': note && note.over ? 'true' : undefined,
      'aria-describedby': note ? 'kb-' + name + '-limit' : undefined,
      onInput: (e) => setForm({ ...form, [name]: e.currentTarget.value }),
    };
    return html`<label class="field"><span>${label}</span>
      ${multiline
        ? html`<textarea ...${tied} rows=${name.startsWith('answer') ? 4 : 5} value=${form[name]}></textarea>`
        : html`<input ...${tied} value=${form[name]} disabled=${name === 'id' && !isNew} />`}
    </label>
    ${note ? html`<p id=${'kb-' + name + '-limit'} class=${note.over ? 'field-error limit' : 'hint limit'}>${note.text}</p>` : null}`;
  };
  const save = async (e) => {
    e.preventDefault();
    const id = form.id.trim();
    if (!id) return setError(t('kb.id_needed'));
    // The desk's rule for an id (it goes into URLs), said here in the reader's language;
    // the desk checks it again, and its refusal is said by its code.
    if (!ID_RULE.test(id)) return setError(t('kb.id_invalid', { id }));
    if (!form.title.trim() || !form.answer.trim()) return setError(t('kb.needs_title_answer'));
    if (!form.questions.split('\n').some((q) => q.trim())) return setError(t('kb.needs_question'));
    // Over a limit: said here, naming the field, which takes the focus (a question too
    // long is selected), and nothing is sent.
    if (over.length) {
      const note = notes[over[0]];
      const box = document.getElementById('kb-' + over[0]);
      box.focus();
      if (note.line !== undefined) {
        const lines = box.value.split('\n');
        const start = lines.slice(0, note.line).join('\n').length + (note.line ? 1 : 0);
        box.setSelectionRange(start, start + lines[note.line].length);
      }
      return setError(t('kb.not_saved', { problem: note.text }));
    }
    // A new article never writes over one that has its id (PUT would replace it).
    if (isNew) {
      try {
        await api('GET', '/kb/articles/' + encodeURIComponent(id));
        return setError(t('kb.id_taken', { id }));
      } catch (err) {
        if (err.status !== 404) return setError(t('error.generic', { message: err.message }));
      }
    }
    const body = {
      title: form.title.trim(),
      questions: form.questions.split('\n').map((q) => q.trim()).filter(Boolean),
      answer: form.answer.trim(),
      locale: form.locale.trim() || null,
      tags: form.tags.split(',').map((x) => x.trim()).filter(Boolean),
      answers: Object.fromEntries(
        LANGUAGES.map((l) => [l, form['answer_' + l].trim()]).filter(([, text]) => text),
      ),
    };
    try {
      await api('PUT', '/kb/articles/' + encodeURIComponent(id), { body });
      onSaved();
    } catch (err) {
      setError(t('error.generic', { message: err.message }));
    }
  };
  return html`<form class="editor" ref=${own} onSubmit=${save}
    onKeyDown=${(e) => { if (e.key === 'Escape') onCancel(); }}>
    ${field('id', t('kb.id'))}
    ${field('title', t('kb.article_title'))}
    ${field('questions', t('kb.questions'), true)}
    ${field('answer', t('kb.answer'), true)}
    ${field('locale', t('kb.locale'))}
    ${LANGUAGES.map((l) => field('answer_' + l, t('kb.answer_in_' + l), true))}
    ${field('tags', t('kb.tags'))}
    <p class="visually-hidden" aria-live="polite">${overSaid}</p>
    <${Notice} kind="error">${error}<//>
    <button class="primary" type="submit">${t('kb.save')}</button>
    <button type="button" onClick=${onCancel}>${t('kb.cancel')}</button>
  </form>`;
}

export function KnowledgeBase({ me, limits }) {
  const [articles, setArticles] = useState(null);
  const [search, setSearch] = useState('');
  const [editing, setEditing] = useState(null);
  const [notice, setNotice] = useNotice();
  const [error, setError] = useState(null);
  const supervisor = me.role === 'supervisor' || me.role === 'admin';
  // The button the editor was opened from (New article, Edit …): closing the editor puts
  // the focus back on it, not on the page.
  const openedFrom = useRef(null);
  const open = (e, form, isNew) => {
    openedFrom.current = e.currentTarget;
    setEditing({ form, isNew });
  };
  const close = () => {
    setEditing(null);
    openedFrom.current?.focus();
  };

  const load = async () => {
    try {
      const { data } = await api('GET', '/kb/articles');
      setArticles(data.articles);
    } catch (e) {
      setError(t('error.generic', { message: e.message }));
    }
  };
  useEffect(() => {
    load();
  }, []);

  const remove = async (a) => {
    if (!confirm(t('kb.confirm_delete'))) return;
    try {
      await api('DELETE', '/kb/articles/' + encodeURIComponent(a.id));
      setNotice(t('kb.deleted'));
      await load();
    } catch (e) {
      setError(t('error.generic', { message: e.message }));
    }
  };

  const needle = search.trim().toLowerCase();
  const shown = (articles || []).filter(
    (a) =>
      !needle ||
      a.title.toLowerCase().includes(needle) ||
      a.id.toLowerCase().includes(needle) ||
      a.questions.some((q) => q.toLowerCase().includes(needle)),
  );

  return html`<main class="kb">
    <h1>${t('kb.title')}</h1>
    <${Tester} />
    <${Notice} kind="error">${error}<//>
    <${Notice}>${notice}<//>
    ${editing
      ? html`<${Editor} key=${editing.isNew ? 'new' : 'edit.' + editing.form.id} initial=${editing.form} isNew=${editing.isNew} limits=${limits}
          onSaved=${async () => { close(); setNotice(t('kb.saved')); await load(); }}
          onCancel=${close} />`
      : null}
    <div class="kb-head">
      <label class="field search"><span>${t('kb.search')}</span>
        <input type="search" value=${search} onInput=${(e) => setSearch(e.currentTarget.value)} /></label>
      ${supervisor
        ? html`<button onClick=${(e) => open(e, { ...EMPTY }, true)}>${t('kb.new')}</button>`
        : html`<p class="hint">${t('kb.readonly')}</p>`}
    </div>
    <ul class="articles">
      ${shown.map((a) => html`<li key=${a.id}>
        <div><strong>${a.title}</strong> <span class="hint">${a.id}${a.locale ? ' · ' + a.locale : ''}</span></div>
        <p class="answer">${a.answer}</p>
        ${supervisor
          ? html`<button onClick=${(e) => { open(e, toForm(a), false); window.scrollTo(0, 0); }}>${t('kb.edit', { title: a.title })}</button>
              <button onClick=${() => remove(a)}>${t('kb.delete', { title: a.title })}</button>`
          : null}
      </li>`)}
    </ul>
  </main>`;
}
