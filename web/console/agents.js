// The team as the assignment sees it: each agent's skills, languages, open tickets against
// their capacity, and whether they are in. Everyone can look; supervisors edit a profile
// (PUT /agents/{id}), and the desk gives waiting tickets to an agent who gains room.

import { useRef, useState } from 'preact/hooks';
import { html, usePoll, Notice, useNotice, useFocusFirstField, SKILLS } from './ui.js';
import { t } from './i18n.js';
import { api } from './api.js';

const POLL_MS = 5000;
export const LANGUAGE_CODES = ['zh', 'en'];
const MAX_CAPACITY = 200;

function Checkboxes({ legend, values, chosen, prefix, onChange }) {
  return html`<fieldset class="checks">
    <legend>${legend}</legend>
    ${values.map((v) => html`<label>
      <input type="checkbox" checked=${chosen.includes(v)}
        onChange=${(e) => onChange(e.currentTarget.checked ? [...chosen, v] : chosen.filter((x) => x !== v))} />
      ${t(prefix + v)}
    </label>`)}
  </fieldset>`;
}

function Editor({ profile, onSaved, onCancel }) {
  const [form, setForm] = useState({
    name: profile.name,
    skills: [...profile.skills],
    languages: [...profile.languages],
    capacity: String(profile.capacity),
    available: profile.available,
  });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  // Opened from a row far down, the editor takes the focus; Escape closes it.
  const own = useRef(null);
  useFocusFirstField(own);
  const save = async (e) => {
    e.preventDefault();
    if (busy) return;
    // An empty box is no number (Number('') would be 0, and the agent would take nothing).
    const capacity = form.capacity.trim() === '' ? NaN : Number(form.capacity);
    if (!Number.isInteger(capacity) || capacity < 0 || capacity > MAX_CAPACITY) {
      setError(t('agents.bad_capacity', { max: MAX_CAPACITY }));
      return;
    }
    setBusy(true);
    try {
      const { data } = await api('PUT', '/agents/' + encodeURIComponent(profile.id), {
        body: {
          name: form.name.trim() || profile.id,
          skills: form.skills,
          languages: form.languages,
          capacity,
          available: form.available,
        },
      });
      onSaved(data);
    } catch (err) {
      setError(t('error.generic', { message: err.message }));
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="editor" aria-labelledby="agent-editor-title" novalidate onSubmit=${save} ref=${own}
    onKeyDown=${(e) => { if (e.key === 'Escape') onCancel(); }}>
    <h2 id="agent-editor-title">${t('agents.editing', { name: profile.name })}</h2>
    <label class="field"><span>${t('agents.name')}</span>
      <input value=${form.name} onInput=${(e) => setForm({ ...form, name: e.currentTarget.value })} /></label>
    <${Checkboxes} legend=${t('agents.skills')} values=${SKILLS} chosen=${form.skills} prefix="skill."
      onChange=${(skills) => setForm({ ...form, skills })} />
    <${Checkboxes} legend=${t('agents.languages')} values=${LANGUAGE_CODES} chosen=${form.languages} prefix="language."
      onChange=${(languages) => setForm({ ...form, languages })} />
    <label class="field"><span>${t('agents.capacity')}</span>
      <input type="number" min="0" max=${MAX_CAPACITY} step="1" value=${form.capacity}
        onInput=${(e) => setForm({ ...form, capacity: e.currentTarget.value })} /></label>
    <label class="check"><input type="checkbox" checked=${form.available}
      onChange=${(e) => setForm({ ...form, available: e.currentTarget.checked })} /> ${t('agents.is_available')}</label>
    <${Notice} kind="error">${error}<//>
    <div class="buttons">
      <button class="primary" type="submit" aria-disabled=${busy ? 'true' : undefined}>${t('agents.save')}</button>
      <button type="button" onClick=${onCancel}>${t('agents.cancel')}</button>
    </div>
  </form>`;
}

function Load({ profile: a }) {
  const full = a.open_tickets >= a.capacity;
  return html`<span class=${full ? 'load full' : 'load'}>
    ${t('agents.load_value', { open: a.open_tickets, capacity: a.capacity })}
    ${full ? html` <span class="pill load-full">${t('agents.full')}</span>` : null}
  </span>`;
}

/** Available, away, or removed: a profile no token names any more (the desk set it away
 * at start and refuses to change it), which is no one to edit or to give tickets to. */
function Availability({ profile: a }) {
  if (a.removed) return html`<span class="pill agent-removed">⊘ ${t('agents.removed')}</span>`;
  return html`<span class=${'pill ' + (a.available ? 'agent-available' : 'agent-away')}>
    ${a.available ? '● ' + t('agents.available') : '○ ' + t('agents.away')}</span>`;
}

export function Agents({ me, onMe }) {
  const [agents, setAgents] = useState(null);
  const [editing, setEditing] = useState(null);
  const [notice, setNotice] = useNotice();
  const [error, setError] = useState(null);
  const supervisor = me.role === 'supervisor' || me.role === 'admin';
  // The Edit button the editor was opened from: closing the editor (Escape, Cancel, Save)
  // puts the focus back on it, not on the page.
  const openedFrom = useRef(null);
  const close = () => {
    setEditing(null);
    openedFrom.current?.focus();
  };

  const load = async () => {
    try {
      const { data } = await api('GET', '/agents');
      setAgents(data.agents);
      setError(null);
    } catch (e) {
      setError(e.status === 0 ? t('error.network') : t('error.generic', { message: e.message }));
    }
  };
  usePoll(load, POLL_MS, []);

  const saved = async (profile) => {
    close();
    setNotice(t('agents.saved'));
    if (profile.id === me.name) onMe({ ...me, profile });
    await load();
  };

  // In the console's own order, whatever order the profile was saved in.
  const list = (values, all, prefix) => {
    const shown = all.filter((v) => values.includes(v));
    return shown.length ? shown.map((v) => t(prefix + v)).join(t('agents.separator')) : t('agents.no_skills');
  };

  return html`<main class="agents">
    <h1>${t('agents.title')}</h1>
    <${Notice} kind="error">${error}<//>
    <${Notice}>${notice}<//>
    ${supervisor ? null : html`<p class="hint">${t('agents.readonly')}</p>`}
    ${editing
      ? html`<${Editor} key=${editing.id} profile=${editing} onSaved=${saved} onCancel=${close} />`
      : null}
    ${agents && agents.length === 0 ? html`<p class="empty">${t('agents.none')}</p>` : null}
    ${agents && agents.length
      ? html`<table class="agent-table">
          <caption>${t('agents.list')}</caption>
          <thead><tr>
            <th scope="col">${t('agents.name')}</th>
            <th scope="col">${t('agents.skills')}</th>
            <th scope="col">${t('agents.languages')}</th>
            <th scope="col">${t('agents.load')}</th>
            <th scope="col">${t('agents.availability')}</th>
            ${supervisor ? html`<th scope="col"><span class="visually-hidden">${t('agents.actions')}</span></th>` : null}
          </tr></thead>
          <tbody>
            ${agents.map((a) => html`<tr key=${a.id}>
              <th scope="row">${a.name}${a.name !== a.id ? html` <span class="hint">${a.id}</span>` : null}</th>
              <td>${list(a.skills, SKILLS, 'skill.')}</td>
              <td>${list(a.languages, LANGUAGE_CODES, 'language.')}</td>
              <td><${Load} profile=${a} /></td>
              <td><${Availability} profile=${a} /></td>
              ${supervisor
                ? html`<td>${a.removed
                    ? html`<span class="hint">${t('agents.removed_why')}</span>`
                    : html`<button onClick=${(e) => { openedFrom.current = e.currentTarget; setNotice(null); setEditing(a); window.scrollTo(0, 0); }}>
                        ${t('agents.edit', { name: a.name })}</button>`}</td>`
                : null}
            </tr>`)}
          </tbody>
        </table>`
      : null}
  </main>`;
}
