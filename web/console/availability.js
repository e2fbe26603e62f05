// The signed-in agent's "Available" switch in the header. Away, the desk assigns them
// nothing new; back, it gives them waiting tickets at once. The admin token has no profile,
// so it has no switch. A supervisor may change it too (the Agents view), so it is read again
// now and then.

const POLL_MS = 30000;

import { useState } from 'preact/hooks';
import { html, usePoll } from './ui.js';
import { t } from './i18n.js';
import { api } from './api.js';

export function Availability({ me, onMe }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  usePoll(async () => {
    if (!me.profile || busy) return;
    const { data } = await api('GET', '/me');
    if (data.profile && data.profile.available !== me.profile.available) onMe(data);
  }, POLL_MS, []);
  if (!me.profile) return null;
  const available = me.profile.available;
  const toggle = async (e) => {
    const want = e.currentTarget.checked;
    setBusy(true);
    setError(null);
    try {
      const { data } = await api('PATCH', '/me', { body: { available: want } });
      onMe(data);
    } catch (err) {
      // The switch shows what the desk holds, not what was asked.
      e.target.checked = available;
      setError(t('error.generic', { message: err.message }));
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="availability">
    <label class=${available ? 'switch on' : 'switch off'}>
      <input type="checkbox" role="switch" checked=${available} aria-checked=${available ? 'true' : 'false'}
        disabled=${busy} onChange=${toggle} />
      <span>${t('me.available')}</span>
    </label>
    <span class="availability-state" aria-live="polite">${available ? '' : t('me.away_note')}</span>
    ${error ? html`<span class="notice error" role="alert">${error}</span>` : null}
  </span>`;
}
