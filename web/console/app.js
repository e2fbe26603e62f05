// The console's root: sign-in, the navigation, the language switch, and which view shows.
// Views are chosen by the URL's hash (#/tickets, #/tickets/<id>, #/kb, #/canned, #/agents,
// #/reports), so the browser's back button and bookmarks work. A tag's link is
// #/tickets?tag=<tag> (URI-encoded): the inbox, which takes the tag into its Tag filter.

import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { html, guardComposingEnter } from './ui.js';
import { t, lang, setLang, onLang, LANGUAGES } from './i18n.js';
import { api } from './api.js';
import { SignIn, loadConfig, finishOidc, currentToken, signOut, onOtherTabs } from './auth.js';
import { Inbox } from './inbox.js';
import { TicketView } from './ticket.js';
import { KnowledgeBase } from './kb.js';
import { Reports } from './reports.js';
import { Agents } from './agents.js';
import { CannedResponses } from './canned.js';
import { Availability } from './availability.js';

function route() {
  const [path, search] = location.hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/');
  if (parts[0] === 'tickets' && parts[1]) return { view: 'ticket', id: decodeURIComponent(parts[1]), reply: parts[2] === 'reply' };
  if (parts[0] === 'kb') return { view: 'kb' };
  if (parts[0] === 'reports') return { view: 'reports' };
  if (parts[0] === 'agents') return { view: 'agents' };
  if (parts[0] === 'canned') return { view: 'canned' };
  // A new object on every change of the hash, so the inbox takes a tag's link followed
  // again (the same tag) as well; `tag` is null when the URL names none.
  return { view: 'inbox', tag: new URLSearchParams(search).get('tag') };
}

function App() {
  const [, setLanguage] = useState(lang());
  const [config, setConfig] = useState(null);
  const [me, setMe] = useState(null);
  const [signInError, setSignInError] = useState(null);
  const [where, setWhere] = useState(route());

  const signedIn = useRef(false);
  signedIn.current = !!me;

  /** Signs in with the stored token: null when it is taken, else what went wrong, said
   * for the sign-in page (`refused` names the token's fault). */
  const whoAmI = async (refused = 'signin.bad') => {
    if (!currentToken()) return t(refused);
    try {
      const { data } = await api('GET', '/me');
      setMe(data);
      setSignInError(null);
      return null;
    } catch (e) {
      if (e.status === 0) return t('signin.unreachable');
      return e.status === 401 ? t(refused) : t('error.generic', { message: e.message });
    }
  };

  useEffect(() => onLang(setLanguage), []);
  useEffect(() => {
    const f = () => setWhere(route());
    window.addEventListener('hashchange', f);
    // A token the desk stops taking (a 401) says so on the sign-in page; the agent's own
    // sign-out says nothing.
    const out = (e) => {
      if (signedIn.current) setSignInError(e.detail?.ended ? t('signin.ended') : null);
      setMe(null);
    };
    window.addEventListener('helpdesk:signed-out', out);
    // Every tab follows a sign-in or a sign-out made in another.
    const stop = onOtherTabs((token) => {
      if (!token) setMe(null);
      else if (!signedIn.current) whoAmI();
    });
    return () => {
      window.removeEventListener('hashchange', f);
      window.removeEventListener('helpdesk:signed-out', out);
      stop();
    };
  }, []);

  useEffect(() => {
    (async () => {
      const cfg = await loadConfig();
      const refused = cfg.auth === 'oidc' ? await finishOidc(cfg) : null;
      setConfig(cfg);
      // A token kept from an earlier visit that no longer works, or a desk that cannot be
      // reached, is said on the sign-in page.
      const problem = currentToken() ? await whoAmI('signin.ended') : null;
      setSignInError(refused || problem);
    })();
  }, []);

  useEffect(() => {
    document.title = t('app.title');
  });

  if (!config) return null;
  const languageSwitch = html`<label class="lang">
    <span>${t('lang.switch')}</span>
    <select value=${lang()} onChange=${(e) => setLang(e.currentTarget.value)}>
      ${Object.entries(LANGUAGES).map(([code, name]) => html`<option value=${code} selected=${code === lang()}>${name}</option>`)}
    </select>
  </label>`;
  if (!me) {
    return html`<div class="page">
      <header class="top"><span class="brand">${t('app.title')}</span>${languageSwitch}</header>
      <${SignIn} config=${config} onSignedIn=${() => whoAmI()} error=${signInError} />
    </div>`;
  }
  const link = (href, key, active) =>
    html`<a href=${href} aria-current=${active ? 'page' : undefined}>${t(key)}</a>`;
  const supervisor = me.role === 'supervisor' || me.role === 'admin';
  return html`<div class="page">
    <header class="top">
      <span class="brand">${t('app.title')}</span>
      <nav aria-label=${t('nav.main')}>
        ${link('#/tickets', 'nav.tickets', where.view === 'inbox' || where.view === 'ticket')}
        ${link('#/kb', 'nav.kb', where.view === 'kb')}
        ${link('#/canned', 'nav.canned', where.view === 'canned')}
        ${link('#/agents', 'nav.agents', where.view === 'agents')}
        ${supervisor ? link('#/reports', 'nav.reports', where.view === 'reports') : null}
      </nav>
      <span class="who">${t('signin.as', { name: me.name, role: t('role.' + me.role) })}</span>
      <${Availability} me=${me} onMe=${setMe} />
      ${languageSwitch}
      <button onClick=${() => signOut()}>${t('signin.out')}</button>
    </header>
    ${where.view === 'inbox' ? html`<${Inbox} me=${me} route=${where} />` : null}
    ${where.view === 'ticket' ? html`<${TicketView} id=${where.id} me=${me} focusReply=${where.reply} />` : null}
    ${where.view === 'kb' ? html`<${KnowledgeBase} me=${me} limits=${config.article_limits} />` : null}
    ${where.view === 'reports' ? html`<${Reports} me=${me} />` : null}
    ${where.view === 'agents' ? html`<${Agents} me=${me} onMe=${setMe} />` : null}
    ${where.view === 'canned' ? html`<${CannedResponses} me=${me} />` : null}
  </div>`;
}

// Before any handler of the page: no form submits on an input method's Enter.
document.addEventListener('keydown', guardComposingEnter, true);
render(html`<${App} />`, document.getElementById('app'));
