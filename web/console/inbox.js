// The inbox: the views (mine, unassigned, all) with their counts, filters, a search over
// what is loaded (subject, description, the ticket's reference) that also asks the desk
// for a reference it does not hold (GET /tickets?ref=), and the ticket list, each
// row with its reference, assignee and SLA state. It polls with If-None-Match, so an idle
// console moves a few hundred bytes every few seconds; keys j/k move, Enter opens, r
// replies, / searches, x selects the row and Escape clears the selection.
//
// Selection: each row has a checkbox (beside its link, not in it), "Select all shown" is
// over the list, and while any is selected the bulk bar (bulk.js) changes them together.
// A ticket that leaves the list leaves the selection; one whose change failed stays in it.
//
// Paging: "Load more" follows the list's cursor, and every poll walks the cursors again
// from the top, in requests of at most 100, for as many tickets as the pages loaded so far
// hold. So every loaded page stays listed and fresh (a ticket that leaves the filter goes,
// a new one comes in at the top), and the list changes in one step, never in pieces.
// Oldest first (Unassigned's default: the customer who has waited longest) asks the API for
// that order (`order=oldest`), so it pages as newest first does.

import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { html, usePoll, isKeyForControl, KeysHint, Select, Notice, NOTICE_MS, STATUSES, PRIORITIES, SKILLS, CHANNELS, TicketRef, ticketRef } from './ui.js';
import { t, when } from './i18n.js';
import { api, query } from './api.js';
import { AssigneeShort, AwaitingShort, SlaShort, nextDue, waitingSince } from './assignment.js';
import { BulkBar, BulkNotice } from './bulk.js';
import { KnownTags, TagChips, TagFilter, noteTags, typedTag } from './tags.js';

const POLL_MS = 3000;
const PAGE = 25;
// The API's largest page: a poll over more loaded tickets takes several requests.
const MAX_LIMIT = 100;
const RANK = { urgent: 0, high: 1, normal: 2, low: 3 };
const VIEWS = ['mine', 'unassigned', 'all'];

// The ticket the agent last opened from the list, so that coming back (the back button,
// "Back to tickets") puts the cursor and the focus on its row again.
let leftAt = null;

/** How a view sorts until its agent chooses: Unassigned oldest first, since the customer
 * who has waited longest should be taken first; the others newest first. */
function defaultSort(view) {
  return view === 'unassigned' ? 'oldest' : saved('sort', 'newest');
}

function saved(key, fallback) {
  return localStorage.getItem('helpdesk.inbox.' + key) ?? fallback;
}

function usePersisted(key, fallback) {
  const [value, setValue] = useState(saved(key, fallback));
  return [value, (v) => { localStorage.setItem('helpdesk.inbox.' + key, v); setValue(v); }];
}

/** Whether a search could be a ticket's reference: 8 letters or digits. */
const isReference = (text) => /^[0-9A-Za-z]{8}$/.test(text);

/** The inbox; `route` is app.js's route, whose `tag` (from a tag's link) it takes once. */
export function Inbox({ me, route }) {
  // Where each opens first, until they pick another view: an agent's own tickets (the
  // desk's rule gives them their work), as Zendesk's "Your unsolved tickets" and Chatwoot's
  // "Mine" do; a supervisor's or the administrator's, everything. Kept per person, so that
  // one browser signed in by two does not swap their views.
  const [view, setView] = usePersisted(me.name + '.view', me.role === 'agent' ? 'mine' : 'all');
  const [status, setStatus] = usePersisted('status', 'active');
  const [priority, setPriority] = usePersisted('priority', '');
  const [skill, setSkill] = usePersisted('skill', '');
  const [channel, setChannel] = usePersisted('channel', '');
  // One tag (tags.js), sent as `tag=` on the list and the counts; the desk's refusal of it
  // is said beside its box, not as a failed list.
  const [tag, setTag] = usePersisted('tag', '');
  const [tagError, setTagError] = useState(null);
  // Each view keeps its own order, once its agent chooses one.
  const [sorts, setSorts] = useState(() => Object.fromEntries(VIEWS.map((v) => [v, saved('sort.' + v, defaultSort(v))])));
  const sort = sorts[view];
  const setSort = (value) => {
    localStorage.setItem('helpdesk.inbox.sort.' + view, value);
    setSorts((all) => ({ ...all, [view]: value }));
  };
  const [search, setSearch] = useState('');
  const [pages, setPages] = useState(1);
  const [tickets, setTickets] = useState(null);
  const [more, setMore] = useState(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const [counts, setCounts] = useState(null);
  const [error, setError] = useState(null);
  const [updated, setUpdated] = useState(null);
  const [selected, setSelected] = useState(0);
  // A tag applied, from the Tag box or a tag's link: its refusal (if any) goes with the old
  // tag, and the list starts again from its first page.
  const applyTag = (value) => {
    setTag(value);
    setTagError(null);
    setPages(1);
  };
  // A tag's link (`#/tickets?tag=vip`, from a ticket's Tags group) replaces the Tag filter as
  // the box does, and the other filters stay. The URL then goes back to #/tickets: the tag is
  // kept with the filters, so a reload shows the same list, and one the agent changes later
  // is not put back by a reload. Before the browser paints, so the old tag never shows.
  useLayoutEffect(() => {
    if (route.tag === null) return;
    applyTag(typedTag(route.tag));
    history.replaceState(history.state, '', '#/tickets');
  }, [route]);
  // The tickets ticked for a bulk change, each with the version it had when ticked (what
  // a bulk change sends as If-Match, so a change someone made since, which a poll may have
  // shown without the agent looking, is reported, never overwritten) and its tags at that
  // version (what Add tag adds to), and how the last bulk change went.
  const [picked, setPicked] = useState(() => new Map());
  const [outcomes, setOutcomes] = useState(null);
  const noticeRef = useRef(null);
  const barRef = useRef(null);
  // Each list request's last answer by its URL, so that a 304 reuses it; kept for the URLs
  // the last poll asked, no more.
  const answers = useRef(new Map());
  const countsTag = useRef(null);
  // Grows when the filters change or a page is added: a request begun before then answers
  // for a list no longer on screen, and is dropped.
  const generation = useRef(0);
  const searchBox = useRef(null);
  const listRef = useRef(null);
  const tabRefs = useRef({});
  // The first row "Load more" added: the focus goes there if the button it was on went
  // (no more pages) or went off while loading.
  const firstNew = useRef(null);

  const filters = {
    status,
    priority,
    skill,
    channel,
    tag,
    assignee: view === 'mine' ? 'me' : view === 'unassigned' ? 'none' : '',
    // Oldest first is the API's own order, so its pages are the oldest ones.
    order: sort === 'oldest' ? 'oldest' : '',
  };
  const key = JSON.stringify(filters);
  useEffect(() => {
    generation.current += 1;
  }, [key]);

  /** One page of the list, revalidated with the ETag of its last answer. */
  const fetchPage = async (limit, cursor, seen) => {
    const url = '/tickets' + query({ ...filters, limit, cursor });
    const last = answers.current.get(url);
    const page = await api('GET', url, { etag: last && last.etag });
    const data = page.status === 304 && last ? last.data : page.data;
    seen.set(url, { etag: page.etag, data });
    return data;
  };

  usePoll(async () => {
    const started = generation.current;
    const want = pages * PAGE;
    try {
      const seen = new Map();
      let list = [];
      let cursor;
      let data;
      do {
        data = await fetchPage(Math.min(MAX_LIMIT, want - list.length), cursor, seen);
        list = list.concat(data.tickets);
        cursor = data.next_cursor || null;
      } while (cursor && list.length < want && data.tickets.length > 0);
      const c = await api('GET', '/tickets/counts' + query({ priority, skill, channel, tag }), { etag: countsTag.current });
      // A ticket the reference search found outside the list is kept current as well.
      const again = isReference(reference) ? (await api('GET', '/tickets' + query({ ref: reference }))).data.tickets : null;
      if (generation.current !== started) return;
      answers.current = seen;
      setTickets(list);
      noteTags(list);
      setTagError(null);
      if (again) setFound(again);
      setMore(cursor);
      if (c.status !== 304) {
        countsTag.current = c.etag;
        setCounts(c.data);
      }
      setError(null);
      setUpdated(new Date().toISOString());
    } catch (e) {
      if (generation.current !== started) return;
      if (e.code === 'invalid_tag') {
        // A tag the desk refuses lists nothing: said beside the Tag box.
        setTagError(e.message);
        setError(null);
        setTickets([]);
        setMore(null);
        setCounts(null);
        countsTag.current = null;
      } else {
        setError(e.status === 0 ? t('error.network') : t('error.generic', { message: e.message }));
      }
    }
  }, POLL_MS, [key]);

  const loadMore = async () => {
    if (!more || loadingMore) return;
    const started = generation.current;
    setLoadingMore(true);
    try {
      const page = await api('GET', '/tickets' + query({ ...filters, limit: PAGE, cursor: more }));
      if (generation.current !== started) return;
      generation.current += 1;
      firstNew.current = (tickets || []).length;
      noteTags(page.data.tickets);
      setTickets((list) => {
        const known = new Set((list || []).map((tk) => tk.id));
        return [...(list || []), ...page.data.tickets.filter((tk) => !known.has(tk.id))];
      });
      setMore(page.data.next_cursor || null);
      setPages((n) => n + 1);
      setError(null);
    } catch (e) {
      setError(e.status === 0 ? t('error.network') : t('error.generic', { message: e.message }));
    } finally {
      setLoadingMore(false);
    }
  };

  // A search that could be a ticket's reference (what the customer was told, with or
  // without "#") also asks the desk, so that a ticket not loaded, or outside the filters
  // (closed, someone else's), is found too.
  const [found, setFound] = useState([]);
  const reference = search.trim().replace(/^[#＃]/, '');
  useEffect(() => {
    if (!isReference(reference)) {
      setFound([]);
      return undefined;
    }
    let live = true;
    api('GET', '/tickets' + query({ ref: reference })).then(
      ({ data }) => live && setFound(data.tickets),
      () => live && setFound([]),
    );
    return () => {
      live = false;
    };
  }, [reference]);

  const needle = search.trim().toLowerCase();
  const matches = (tk) =>
    tk.subject.toLowerCase().includes(needle) ||
    tk.description.toLowerCase().includes(needle) ||
    ticketRef(tk.id).toLowerCase().includes(needle) ||
    tk.id.toLowerCase() === needle;
  let shown = (tickets || []).filter((tk) => !needle || matches(tk));
  const listed = new Set(shown.map((tk) => tk.id));
  shown = shown.concat(found.filter((tk) => !listed.has(tk.id)));
  if (sort === 'oldest') {
    // By id, as the desk orders its pages: ids are time-ordered (UUID v7), and a time
    // compared as text is not (one on a whole second is written without its ".000").
    shown = [...shown].sort((a, b) => (a.id < b.id ? -1 : 1));
  } else if (sort === 'urgent') {
    shown = [...shown].sort((a, b) => RANK[a.priority] - RANK[b.priority] || (a.id < b.id ? 1 : -1));
  } else if (sort === 'due') {
    shown = [...shown].sort((a, b) => nextDue(a) - nextDue(b) || RANK[a.priority] - RANK[b.priority]);
  } else if (sort === 'waiting') {
    // The customer who has waited longest for a reply first; those nobody keeps waiting last.
    const since = (tk) => {
      const at = waitingSince(tk);
      return at ? new Date(at).getTime() : Infinity;
    };
    shown = [...shown].sort((a, b) => since(a) - since(b) || (a.id < b.id ? -1 : 1));
  }

  // A ticket that left the list (or the reference search's answer) leaves the selection.
  useEffect(() => {
    const here = new Set([...(tickets || []), ...found].map((tk) => tk.id));
    setPicked((ids) => ([...ids.keys()].every((id) => here.has(id)) ? ids : new Map([...ids].filter(([id]) => here.has(id)))));
  }, [tickets, found]);
  const chosen = shown.filter((tk) => picked.has(tk.id)).map((tk) => ({ ...tk, ...picked.get(tk.id) }));
  const pickedAt = (tk) => ({ version: tk.version, tags: tk.tags || [] });
  const toggle = (tk) => setPicked((ids) => {
    const next = new Map(ids);
    if (!next.delete(tk.id)) next.set(tk.id, pickedAt(tk));
    return next;
  });
  const allShown = shown.length > 0 && chosen.length === shown.length;
  const selectAll = () => setPicked(allShown ? new Map() : new Map([...shown.map((tk) => [tk.id, pickedAt(tk)]), ...picked]));
  // The changed tickets as the desk answered, shown at once (a later change to them is sent
  // with their new version); a poll begun before the change answers for an older list.
  // Changed, a ticket stays selected at its new version; one someone else changed first is
  // unselected (the agent looks at it before changing it again); a refused one stays.
  const bulkDone = (results) => {
    const now = new Map(results.filter((o) => o.ok).map((o) => [o.ticket.id, o.ticket]));
    const newer = (tk) => {
      const fresh = now.get(tk.id);
      return fresh && fresh.version >= tk.version ? fresh : tk;
    };
    generation.current += 1;
    setTickets((list) => list && list.map(newer));
    setFound((list) => list.map(newer));
    setPicked((ids) => {
      const next = new Map(ids);
      for (const o of results) {
        if (o.ok) next.set(o.ticket.id, pickedAt(o.ticket));
        else if (o.conflict) next.delete(o.ticket.id);
      }
      return next;
    });
    setOutcomes(results);
  };
  // A notice that everything went through goes by itself; one naming failures stays until
  // the next change.
  useEffect(() => {
    if (!outcomes || !outcomes.every((o) => o.ok)) return undefined;
    const timer = setTimeout(() => setOutcomes(null), NOTICE_MS);
    return () => clearTimeout(timer);
  }, [outcomes]);
  // When the bar goes (nothing selected any more) with the focus in it, the focus goes to
  // the notice of what happened, else to the cursor's row, never to the page.
  const hadBar = useRef(false);
  useEffect(() => {
    const had = hadBar.current;
    hadBar.current = chosen.length > 0;
    if (!had || chosen.length > 0 || !nowhere()) return;
    if (noticeRef.current && noticeRef.current.textContent.trim()) noticeRef.current.focus();
    else focusCursor();
  }, [chosen.length]);

  // The key handler is registered once and reads the latest list through a ref, so a key
  // pressed right after a render never meets an older list.
  const latest = useRef({});
  latest.current = { shown, selected, picked };
  useEffect(() => {
    const onKey = (e) => {
      // A row's checkbox takes the list's keys; a dialog keeps its own.
      if (isKeyForControl(e)) return;
      const { shown: list, selected: at, picked: ids } = latest.current;
      // Enter on a button or a link elsewhere keeps its own meaning.
      const inList = e.target === document.body || listRef.current?.contains(e.target);
      if (e.key === 'Enter' && !inList) return;
      if (e.key === '/') {
        e.preventDefault();
        searchBox.current?.focus();
      } else if (e.key === 'j' || e.key === 'k') {
        e.preventDefault();
        if (!list.length) return;
        const next = Math.max(0, Math.min(list.length - 1, at + (e.key === 'j' ? 1 : -1)));
        latest.current.selected = next;
        setSelected(next);
        listRef.current?.querySelectorAll('a.ticket')[next]?.focus();
      } else if (e.key === 'x') {
        // The row the focus is on (rows move under a poll; the cursor's index may not);
        // else the cursor's row. Not from the bar or the select-all box.
        if (!inList) return;
        const row = e.target.closest?.('li[data-id]');
        const tk = row ? list.find((x) => x.id === row.dataset.id) : list[at];
        if (!tk) return;
        e.preventDefault();
        toggle(tk);
      } else if (e.key === 'Escape' && ids.size > 0) {
        e.preventDefault();
        // Out of the bar first, which goes with the selection.
        if (barRef.current?.contains(document.activeElement)) focusCursor();
        setPicked(new Map());
      } else if (e.key === 'Enter' || e.key === 'r') {
        const tk = list[at];
        if (!tk) return;
        e.preventDefault();
        leftAt = tk.id;
        location.hash = `#/tickets/${encodeURIComponent(tk.id)}${e.key === 'r' ? '/reply' : ''}`;
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  // The counts are of active tickets under the other filters (priority, skill, channel), so
  // with the status filter at "active" each is the size of its view's list; under another
  // status they say they count active tickets, rather than pass for the size of the list.
  const count = (name) => {
    if (!counts) return '';
    return status === 'active' ? counts[name] : t('inbox.count_active', { count: counts[name] });
  };
  // The views are tabs as the ARIA pattern has them: one tab stop (the chosen view), the
  // arrow keys, Home and End move between them and show each, and the list below is their
  // tab panel.
  const choose = (name) => {
    if (name === view) return;
    setView(name);
    setPages(1);
    setSelected(0);
  };
  const onTabKey = (e) => {
    const at = VIEWS.indexOf(view);
    const next = { ArrowRight: VIEWS[(at + 1) % VIEWS.length], ArrowLeft: VIEWS[(at + VIEWS.length - 1) % VIEWS.length],
      Home: VIEWS[0], End: VIEWS[VIEWS.length - 1] }[e.key];
    if (!next) return;
    e.preventDefault();
    choose(next);
    tabRefs.current[next]?.focus();
  };
  const tab = (name) => html`<button role="tab" id=${'view-' + name} aria-selected=${view === name ? 'true' : 'false'}
      aria-controls="inbox-panel" tabindex=${view === name ? 0 : -1} ref=${(el) => { tabRefs.current[name] = el; }}
      onKeyDown=${onTabKey} onClick=${() => choose(name)}>
    ${t('inbox.' + name)} <span class="count">${count(name)}</span>
  </button>`;

  /** Where the focus goes when it has nowhere better: the row the cursor is on, else the
   * chosen view's tab. */
  const focusCursor = () => {
    const row = listRef.current?.querySelectorAll('a.ticket')[latest.current.selected];
    (row || tabRefs.current[view])?.focus();
  };
  // Arriving (after signing in, or from the navigation) the focus is on the chosen view's
  // tab, not lost on the page; coming back from a ticket it is on that ticket's row, once
  // the list shows it.
  const nowhere = () => !document.activeElement || document.activeElement === document.body;
  useEffect(() => {
    if (!leftAt && nowhere()) tabRefs.current[view]?.focus();
  }, []);
  useEffect(() => {
    if (firstNew.current === null || !tickets) return;
    const at = firstNew.current;
    firstNew.current = null;
    if (nowhere()) listRef.current?.querySelectorAll('a.ticket')[at]?.focus();
  }, [tickets]);
  const restored = useRef(false);
  useEffect(() => {
    if (restored.current || tickets === null) return;
    restored.current = true;
    const at = leftAt ? shown.findIndex((tk) => tk.id === leftAt) : -1;
    leftAt = null;
    if (at >= 0) {
      latest.current.selected = at;
      setSelected(at);
      listRef.current?.querySelectorAll('a.ticket')[at]?.focus();
    } else if (nowhere()) {
      tabRefs.current[view]?.focus();
    }
  }, [tickets]);

  return html`<main class="inbox">
    <div class="inbox-head">
      <div role="tablist" aria-label=${t('inbox.views')}>${tab('mine')}${tab('unassigned')}${tab('all')}</div>
      <label class="field search">
        <span>${t('inbox.search')}</span>
        <input ref=${searchBox} type="search" value=${search}
          onInput=${(e) => { setSearch(e.currentTarget.value); setSelected(0); }}
          onKeyDown=${(e) => { if (e.key === 'Escape') { e.preventDefault(); focusCursor(); } }} />
      </label>
    </div>
    <fieldset class="filters">
      <legend>${t('inbox.filters')}</legend>
      <label class="field">
        <span>${t('filter.status')}</span>
        <select value=${status} onChange=${(e) => { setStatus(e.currentTarget.value); setPages(1); }}>
          <option value="active" selected=${status === 'active'}>${t('filter.active')}</option>
          <option value="" selected=${status === ''}>${t('filter.any')}</option>
          ${STATUSES.map((s) => html`<option value=${s} selected=${s === status}>${t('status.' + s)}</option>`)}
        </select>
      </label>
      <${Select} label=${t('filter.priority')} value=${priority} options=${PRIORITIES} prefix="priority." any=${t('filter.any')} onChange=${(v) => { setPriority(v); setPages(1); }} />
      <${Select} label=${t('filter.skill')} value=${skill} options=${SKILLS} prefix="skill." any=${t('filter.any')} onChange=${(v) => { setSkill(v); setPages(1); }} />
      <${Select} label=${t('filter.channel')} value=${channel} options=${CHANNELS} prefix="channel." any=${t('filter.any')} onChange=${(v) => { setChannel(v); setPages(1); }} />
      <${TagFilter} value=${tag} error=${tagError} onApply=${applyTag} />
      <${KnownTags} />
      <label class="field">
        <span>${t('inbox.sort')}</span>
        <select value=${sort} onChange=${(e) => setSort(e.currentTarget.value)}>
          <option value="newest" selected=${sort === 'newest'}>${t('inbox.newest')}</option>
          <option value="oldest" selected=${sort === 'oldest'}>${t('inbox.oldest')}</option>
          <option value="urgent" selected=${sort === 'urgent'}>${t('inbox.urgent')}</option>
          <option value="due" selected=${sort === 'due'}>${t('inbox.due')}</option>
          <option value="waiting" selected=${sort === 'waiting'}>${t('inbox.waiting_longest')}</option>
        </select>
      </label>
    </fieldset>
    <div role="tabpanel" id="inbox-panel" aria-labelledby=${'view-' + view}>
    <${Notice} kind="error">${error}<//>
    ${tickets && shown.length === 0 && !tagError ? html`<p class="empty">${t('inbox.empty')}</p>` : null}
    ${shown.length
      ? html`<label class="select-all"><input type="checkbox" checked=${allShown}
          indeterminate=${chosen.length > 0 && !allShown} onChange=${selectAll} /> ${t('bulk.select_all')}</label>`
      : null}
    ${chosen.length ? html`<div ref=${barRef}><${BulkBar} me=${me} tickets=${chosen} onDone=${bulkDone} /></div>` : null}
    <${BulkNotice} outcomes=${outcomes} noticeRef=${noticeRef} />
    <ul class="tickets" aria-label=${t('inbox.list')} ref=${listRef}>
      ${shown.map((tk, i) => html`<li key=${tk.id} data-id=${tk.id} class=${(i === selected ? 'selected' : '') + (picked.has(tk.id) ? ' picked' : '')}>
        <input type="checkbox" class="pick" checked=${picked.has(tk.id)} onChange=${() => toggle(tk)}
          onFocus=${() => setSelected(i)} aria-label=${t('bulk.select_ticket', { ref: ticketRef(tk.id), subject: tk.subject })} />
        <a class="ticket" href=${'#/tickets/' + encodeURIComponent(tk.id)} onFocus=${() => setSelected(i)} onClick=${() => { leftAt = tk.id; }}>
          <span class=${'pill priority-' + tk.priority}>${t('priority.' + tk.priority)}</span>
          <span class="subject">${tk.subject}</span>
          <span class="meta">
            <span class=${'pill status-' + tk.status}>${t('status.' + tk.status)}</span>
            ${tk.reopened_by && tk.status !== 'resolved' && tk.status !== 'closed'
              ? html`<span class="pill reopened">${t('inbox.reopened')}</span>`
              : null}
            <${AwaitingShort} ticket=${tk} />
            <${SlaShort} ticket=${tk} />
            <${TagChips} tags=${tk.tags} />
            ${t('channel.' + tk.channel)} · ${t('skill.' + tk.skill)} · <${AssigneeShort} ticket=${tk} /> · <time datetime=${tk.created_at}>${when(tk.created_at)}</time> · <${TicketRef} id=${tk.id} />
          </span>
        </a>
      </li>`)}
    </ul>
    ${more ? html`<button onClick=${loadMore} disabled=${loadingMore}>${t('inbox.more')}</button>` : null}
    </div>
    <${KeysHint} keys=${t('inbox.keys')}>${updated ? ' · ' + t('inbox.updated', { time: when(updated) }) : ''}<//>
  </main>`;
}
