/* deskbell agent console. Plain JS, no build step, no outside requests.
 *
 * State comes from /console/api/* and stays current through the /console/ws
 * socket; after a reconnect everything is reloaded over HTTP, so nothing
 * missed while offline stays missing. Text from visitors and agents is only
 * ever inserted as text (textContent / text nodes), never as HTML.
 */
(() => {
  'use strict';

  const HEARTBEAT_MS = 30000;
  const TYPING_SEND_MS = 4000;
  const TYPING_IDLE_MS = 5000;
  const VISITOR_TYPING_MS = 8000;
  const REASONS = {
    disabled: 'switched off',
    outside_schedule: 'outside opening hours',
    no_agent_available: 'no agent available',
  };
  const MODES = { live: 'live chat', ai: 'assistant answers', form: 'offline form', hidden: 'hidden' };

  const $ = (id) => document.getElementById(id);
  const ui = {
    widgets: $('widgets'), availability: $('availability'), duty: $('duty'), stay: $('stay'),
    agentName: $('agent-name'), logout: $('logout'), banner: $('banner'), connection: $('connection'),
    tabOpen: $('tab-open'), tabClosed: $('tab-closed'), openCount: $('open-count'),
    list: $('conversations'), empty: $('empty-list'), more: $('more'),
    noSelection: $('no-selection'), conversation: $('conversation'), title: $('conv-title'),
    meta: $('conv-meta'), claimState: $('claim-state'), claim: $('claim'), close: $('close'),
    messages: $('messages'), typing: $('typing'), form: $('reply-form'), reply: $('reply'),
    send: $('send'), signedOut: $('signed-out'),
  };

  const state = {
    me: null,
    widgets: new Map(), // id -> {id, key, name, enabled, status}
    convs: new Map(), // id -> conversation summary, for the current tab
    tab: 'open',
    nextCursor: null,
    selected: null, // conversation id shown on the right
    current: null, // its summary
    messages: [], // its messages, by seq
    messageIds: new Set(),
    seen: {}, // conversation id -> last seq the agent looked at
    changes: new Map(), // message id -> "edited" | "withdrawn" (seen live on this page)
    signedOut: false,
  };

  // -- small helpers -------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') node.className = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child); // strings become text nodes
    }
    return node;
  }

  function safeUrl(raw) {
    try {
      const url = new URL(raw);
      return url.protocol === 'https:' || url.protocol === 'http:' ? url : null;
    } catch (_e) {
      return null;
    }
  }

  function shortUrl(raw) {
    const url = safeUrl(raw);
    if (!url) return raw || '';
    const path = url.pathname === '/' ? '' : url.pathname;
    return url.host + path;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  function shortTime(iso) {
    if (!iso) return '';
    const at = new Date(iso);
    return sameDay(at, new Date()) ? timeFmt.format(at) : `${dateFmt.format(at)}, ${timeFmt.format(at)}`;
  }

  function ago(iso) {
    if (!iso) return '';
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return 'now';
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h`;
    return dateFmt.format(new Date(iso));
  }

  function timeEl(iso, text) {
    return el('time', { datetime: iso, title: iso ? fullFmt.format(new Date(iso)) : null }, text);
  }

  function visitorName(c) {
    return c.visitor_name || c.visitor_email || `Visitor #${c.id}`;
  }

  function agentLabel(id, name) {
    if (state.me && id === state.me.id) return 'you';
    return name || `agent #${id}`;
  }

  let bannerTimer = null;
  function showError(message) {
    ui.banner.textContent = message;
    ui.banner.hidden = false;
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(() => { ui.banner.hidden = true; }, 8000);
  }
  ui.banner.addEventListener('click', () => { ui.banner.hidden = true; });

  // -- the HTTP API --------------------------------------------------------
  class ApiError extends Error {
    constructor(code, message, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const options = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method !== 'GET') {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body || {});
    }
    let response;
    try {
      response = await fetch(`/console/api/${path}`, options);
    } catch (_e) {
      throw new ApiError('network', 'Could not reach the server. Check your connection.', 0);
    }
    if (response.status === 401) {
      signOutView();
      throw new ApiError('unauthorized', 'You are signed out.', 401);
    }
    if (response.status === 204) return null;
    let data = null;
    try { data = await response.json(); } catch (_e) { data = null; }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(error.code || `http_${response.status}`, error.message || `Request failed (${response.status}).`, response.status);
    }
    return data;
  }

  function report(error) {
    if (error && error.code !== 'unauthorized') showError(error.message || String(error));
  }

  // -- seen marks (unread dots) ------------------------------------------
  function seenKey() { return `deskbell.console.seen.${state.me ? state.me.id : 0}`; }

  function loadSeen() {
    try { state.seen = JSON.parse(localStorage.getItem(seenKey()) || '{}') || {}; } catch (_e) { state.seen = {}; }
  }

  function saveSeen() {
    const ids = Object.keys(state.seen);
    if (ids.length > 500) ids.sort((a, b) => a - b).slice(0, ids.length - 500).forEach((id) => delete state.seen[id]);
    try { localStorage.setItem(seenKey(), JSON.stringify(state.seen)); } catch (_e) { /* private mode */ }
  }

  function isUnread(c) {
    const last = c.last_message;
    if (!last || last.from !== 'visitor' || c.status !== 'open') return false;
    if (c.id === state.selected && document.visibilityState === 'visible') return false;
    return c.last_seq > (state.seen[c.id] || 0);
  }

  function markSeen() {
    const c = state.current;
    if (!c || document.visibilityState !== 'visible') return;
    if ((state.seen[c.id] || 0) < c.last_seq) {
      state.seen[c.id] = c.last_seq;
      saveSeen();
      renderList();
    }
  }

  function updateTitle() {
    const unread = [...state.convs.values()].filter(isUnread).length;
    document.title = unread ? `(${unread}) deskbell console` : 'deskbell console';
  }

  // -- the agent ("me") ------------------------------------------------------
  function renderMe() {
    const me = state.me;
    if (!me) return;
    ui.agentName.textContent = me.name;
    ui.agentName.title = me.email;
    ui.duty.checked = me.on_duty;
    ui.stay.checked = me.stay_available;
    ui.duty.disabled = false;
    ui.stay.disabled = false;
    let label = 'Off duty';
    let kind = 'off';
    let hint = 'You are off duty: widgets do not count you as available.';
    if (me.on_duty && me.available) {
      label = 'Available';
      kind = 'on';
      hint = me.stay_available
        ? 'Available until you go off duty (stay available is on).'
        : 'Available while this page is open; you go away after a while without activity.';
    } else if (me.on_duty) {
      label = 'Away';
      kind = 'away';
      hint = 'On duty but not seen recently. Keep this page open or turn on stay available.';
    }
    ui.availability.textContent = label;
    ui.availability.className = `pill ${kind}`;
    ui.availability.title = hint;
  }

  async function loadMe() {
    state.me = await api('GET', 'me');
    renderMe();
  }

  let meTimer = null;
  function refreshMeSoon() {
    clearTimeout(meTimer);
    meTimer = setTimeout(() => loadMe().catch(() => {}), 300);
  }

  async function toggle(input, path, field) {
    const wanted = input.checked;
    input.disabled = true;
    try {
      state.me = await api('POST', path, { [field]: wanted });
    } catch (error) {
      input.checked = !wanted;
      report(error);
    } finally {
      input.disabled = false;
      renderMe();
    }
  }

  ui.duty.addEventListener('change', () => toggle(ui.duty, 'duty', 'on_duty'));
  ui.stay.addEventListener('change', () => toggle(ui.stay, 'stay', 'stay_available'));

  // -- widgets -----------------------------------------------------------
  function renderWidgets() {
    const items = [...state.widgets.values()].map((w) => {
      const s = w.status || {};
      const kind = s.online ? 'online' : 'offline';
      const detail = s.online ? 'online' : `offline: ${REASONS[s.reason] || s.reason || 'unknown'}`;
      const mode = MODES[s.mode] ? ` (${MODES[s.mode]})` : '';
      return el('li', { class: `badge ${kind}`, title: `${w.name}: ${detail}${mode}` },
        el('span', { class: 'dot', 'aria-hidden': 'true' }),
        el('span', { class: 'badge-name' }, w.name),
        el('span', { class: 'visually-hidden' }, ` ${detail}`));
    });
    ui.widgets.replaceChildren(...items);
  }

  async function loadWidgets() {
    const data = await api('GET', 'widgets');
    state.widgets = new Map(data.items.map((w) => [w.id, w]));
    renderWidgets();
  }

  // -- the conversation list ----------------------------------------------
  function sorted() {
    const all = [...state.convs.values()];
    if (state.tab === 'open') {
      return all.sort((a, b) => Date.parse(b.updated_at || 0) - Date.parse(a.updated_at || 0) || b.id - a.id);
    }
    return all.sort((a, b) => b.id - a.id);
  }

  function previewText(c) {
    const last = c.last_message;
    if (!last) return 'No messages yet';
    if (last.internal) return `Note: ${last.text.replace(/^\s*(note:|!)\s*/i, '')}`;
    if (last.from === 'agent') return `${state.me && last.author === state.me.name ? 'You' : last.author || 'Agent'}: ${last.text}`;
    if (last.from === 'bot') return `Assistant: ${last.text}`;
    return last.text;
  }

  function listItem(c) {
    const unread = isUnread(c);
    const claim = c.claimed_by ? `Claimed by ${agentLabel(c.claimed_by, c.claimed_by_name)}` : 'Unclaimed';
    const button = el('button', {
      type: 'button',
      class: `conv-item${c.id === state.selected ? ' selected' : ''}${unread ? ' unread' : ''}`,
      'data-id': c.id,
      'aria-current': c.id === state.selected ? 'true' : null,
    },
    el('span', { class: 'row' },
      el('span', { class: 'unread-dot', 'aria-hidden': 'true' }),
      el('span', { class: 'name' }, visitorName(c)),
      unread ? el('span', { class: 'visually-hidden' }, ' (unread)') : null,
      timeEl(c.updated_at, ago(c.updated_at))),
    el('span', { class: 'preview' }, previewText(c)),
    el('span', { class: 'row small' },
      el('span', { class: 'page' }, c.page_url ? shortUrl(c.page_url) : (c.widget_name || '')),
      el('span', { class: `claim${c.claimed_by ? ' claimed' : ''}` }, claim)));
    button.addEventListener('click', () => select(c.id, true));
    return el('li', null, button);
  }

  function renderList() {
    const focusedId = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : null;
    const items = sorted().map(listItem);
    ui.list.replaceChildren(...items);
    ui.empty.hidden = items.length > 0;
    ui.empty.textContent = state.tab === 'open' ? 'No open conversations right now.' : 'No closed conversations yet.';
    ui.more.hidden = !state.nextCursor;
    if (state.tab === 'open') ui.openCount.textContent = items.length ? String(items.length) : '';
    if (focusedId) {
      const again = ui.list.querySelector(`[data-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
    updateTitle();
  }

  async function loadList() {
    const data = await api('GET', `conversations?status=${state.tab}`);
    state.convs = new Map(data.items.map((c) => [c.id, c]));
    state.nextCursor = data.next_cursor;
    renderList();
  }

  async function loadMore() {
    if (!state.nextCursor) return;
    const data = await api('GET', `conversations?status=${state.tab}&before=${encodeURIComponent(state.nextCursor)}`);
    for (const c of data.items) if (!state.convs.has(c.id)) state.convs.set(c.id, c);
    state.nextCursor = data.next_cursor;
    renderList();
  }
  ui.more.addEventListener('click', () => loadMore().catch(report));

  function newer(a, b) {
    // The fresher of two views of one conversation (HTTP answers can race socket frames).
    if (!a) return b;
    if (b.last_seq !== a.last_seq) return b.last_seq > a.last_seq ? b : { ...b, last_seq: a.last_seq, last_message: a.last_message };
    return b;
  }

  function upsert(c) {
    const known = state.convs.get(c.id) || (state.current && state.current.id === c.id ? state.current : null);
    const merged = newer(known, c);
    if (merged.status === state.tab) state.convs.set(c.id, merged);
    else state.convs.delete(c.id);
    if (state.selected === c.id) {
      state.current = merged;
      renderPane();
    }
    renderList();
  }

  const fetching = new Set();
  async function fetchConversation(id) {
    if (fetching.has(id)) return;
    fetching.add(id);
    try {
      upsert(await api('GET', `conversations/${id}`));
    } catch (error) {
      if (error.status !== 404) report(error);
    } finally {
      fetching.delete(id);
    }
  }

  function setTab(tab) {
    if (state.tab === tab) return;
    state.tab = tab;
    ui.tabOpen.setAttribute('aria-selected', String(tab === 'open'));
    ui.tabClosed.setAttribute('aria-selected', String(tab === 'closed'));
    ui.list.setAttribute('aria-label', tab === 'open' ? 'Open conversations' : 'Closed conversations');
    state.convs = new Map();
    state.nextCursor = null;
    renderList();
    loadList().catch(report);
  }
  ui.tabOpen.addEventListener('click', () => setTab('open'));
  ui.tabClosed.addEventListener('click', () => setTab('closed'));

  function listButtons() { return [...ui.list.querySelectorAll('.conv-item')]; }

  ui.list.addEventListener('keydown', (event) => {
    const buttons = listButtons();
    const at = buttons.indexOf(document.activeElement);
    let next = null;
    if (event.key === 'ArrowDown') next = buttons[Math.min(buttons.length - 1, at + 1)];
    else if (event.key === 'ArrowUp') next = buttons[Math.max(0, at - 1)];
    else if (event.key === 'Home') next = buttons[0];
    else if (event.key === 'End') next = buttons[buttons.length - 1];
    if (next) {
      event.preventDefault();
      next.focus();
    }
  });

  document.addEventListener('keydown', (event) => {
    // Alt+Up / Alt+Down switch conversations from anywhere.
    if (!event.altKey || (event.key !== 'ArrowUp' && event.key !== 'ArrowDown')) return;
    const ids = sorted().map((c) => c.id);
    if (!ids.length) return;
    const at = ids.indexOf(state.selected);
    const step = event.key === 'ArrowDown' ? 1 : -1;
    const next = ids[Math.min(ids.length - 1, Math.max(0, at + step))];
    event.preventDefault();
    select(next, true);
  });

  // -- the selected conversation -----------------------------------------
  function metaItem(label, value) {
    return el('span', { class: 'meta-item' }, el('span', { class: 'meta-label' }, `${label} `), value);
  }

  function renderPane() {
    const c = state.current;
    ui.noSelection.hidden = !!c;
    ui.conversation.hidden = !c;
    if (!c) return;
    ui.title.textContent = visitorName(c);
    const meta = [];
    if (c.visitor_email && c.visitor_email !== ui.title.textContent) meta.push(metaItem('Email', c.visitor_email));
    if (c.page_url) {
      const url = safeUrl(c.page_url);
      const link = url
        ? el('a', { href: url.href, target: '_blank', rel: 'noopener noreferrer', title: c.page_title || url.href }, shortUrl(c.page_url))
        : el('span', null, c.page_url);
      meta.push(metaItem('Page', link));
    }
    if (c.widget_name) meta.push(metaItem('Widget', c.widget_name));
    if (c.language) meta.push(metaItem('Language', c.language));
    if (c.timezone) meta.push(metaItem('Time zone', c.timezone));
    meta.push(metaItem('Started', timeEl(c.created_at, shortTime(c.created_at))));
    ui.meta.replaceChildren(...meta);

    const open = c.status === 'open';
    const mine = state.me && c.claimed_by === state.me.id;
    ui.claimState.textContent = !open ? 'Closed' : c.claimed_by ? `Claimed by ${agentLabel(c.claimed_by, c.claimed_by_name)}` : '';
    ui.claimState.className = `claim-state${!open ? ' closed' : mine ? ' mine' : ''}`;
    ui.claim.hidden = !open || !!c.claimed_by;
    ui.close.hidden = !open;
    ui.reply.disabled = !open;
    ui.send.disabled = !open;
    ui.reply.placeholder = open ? 'Reply to the visitor…' : 'This conversation is closed.';
    if (!open) ui.typing.hidden = true;
  }

  function messageNode(m) {
    const change = state.changes.get(m.id);
    const kind = change === 'withdrawn' ? 'withdrawn' : m.internal ? 'note' : m.from;
    const mine = state.me && m.agent_id === state.me.id;
    const li = el('li', { class: `msg msg-${kind}${mine ? ' mine' : ''}`, 'data-seq': m.seq });
    if (kind === 'system') {
      li.append(el('div', { class: 'bubble' }, m.text), timeEl(m.created_at, shortTime(m.created_at)));
      return li;
    }
    let author;
    if (change === 'withdrawn') author = `${m.author || 'Agent'} · deleted, no longer shown to the visitor`;
    else if (m.internal) author = `${m.author || 'Agent'} · only agents see this`;
    else if (m.from === 'visitor') author = state.current ? visitorName(state.current) : 'Visitor';
    else if (m.from === 'bot') author = m.author || 'Assistant';
    else author = mine ? `${m.author || 'You'} (you)` : (m.author || 'Agent');
    li.append(
      el('div', { class: 'msg-head' },
        el('span', { class: 'author' }, author),
        timeEl(m.created_at, shortTime(m.created_at)),
        change === 'edited' ? el('span', { class: 'edited' }, 'edited') : null),
      el('div', { class: 'bubble' }, m.text),
    );
    return li;
  }

  function nearBottom() {
    const box = ui.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  function scrollDown() { ui.messages.scrollTop = ui.messages.scrollHeight; }

  function renderMessages() {
    ui.messages.replaceChildren(...state.messages.map(messageNode));
    if (!state.messages.length) ui.messages.append(el('li', { class: 'msg msg-system' }, el('div', { class: 'bubble' }, 'No messages yet.')));
  }

  function addMessage(m) {
    if (state.messageIds.has(m.id)) return;
    state.messageIds.add(m.id);
    const stick = nearBottom();
    const last = state.messages[state.messages.length - 1];
    state.messages.push(m);
    if (!last || m.seq > last.seq) {
      if (!last) ui.messages.replaceChildren();
      ui.messages.append(messageNode(m));
    } else {
      state.messages.sort((a, b) => a.seq - b.seq);
      renderMessages();
    }
    if (stick || (state.me && m.agent_id === state.me.id)) scrollDown();
  }

  let selecting = 0;
  async function select(id, focusReply) {
    const ticket = ++selecting;
    if (state.selected !== id) {
      state.selected = id;
      state.current = state.convs.get(id) || null;
      state.messages = [];
      state.messageIds = new Set();
      ui.typing.hidden = true;
      renderPane();
      ui.messages.replaceChildren(el('li', { class: 'msg msg-system' }, el('div', { class: 'bubble' }, 'Loading…')));
      renderList();
      if (history.replaceState) history.replaceState(null, '', `#c${id}`);
    }
    let data;
    try {
      data = await api('GET', `conversations/${id}/messages`);
    } catch (error) {
      if (ticket !== selecting) return;
      if (error.status === 404) {
        state.selected = null;
        state.current = null;
        renderPane();
        history.replaceState(null, '', location.pathname);
      }
      report(error);
      return;
    }
    if (ticket !== selecting) return;
    const stick = nearBottom() || !state.messages.length;
    state.current = newer(state.current && state.current.id === id ? state.current : null, data.conversation);
    if (state.current.status === state.tab) state.convs.set(id, state.current);
    for (const m of data.items) state.messageIds.add(m.id);
    const byId = new Map(state.messages.map((m) => [m.id, m]));
    for (const m of data.items) byId.set(m.id, m);
    state.messages = [...byId.values()].sort((a, b) => a.seq - b.seq);
    renderPane();
    renderMessages();
    if (stick) scrollDown();
    markSeen();
    renderList();
    if (focusReply && !ui.reply.disabled) ui.reply.focus();
  }

  async function act(button, path, success) {
    const c = state.current;
    if (!c) return;
    button.disabled = true;
    try {
      const updated = await api('POST', `conversations/${c.id}/${path}`, {});
      upsert(updated);
      if (success) success(updated);
    } catch (error) {
      report(error);
      fetchConversation(c.id);
    } finally {
      button.disabled = false;
    }
  }

  ui.claim.addEventListener('click', () => act(ui.claim, 'claim', () => ui.reply.focus()));
  ui.close.addEventListener('click', () => {
    if (!window.confirm('Close this conversation? The visitor sees that the chat has ended.')) return;
    act(ui.close, 'close');
  });

  // -- replying ------------------------------------------------------------
  let typingSentAt = 0;
  let typingIdle = null;

  function isInternal(text) {
    const t = text.trim().toLowerCase();
    return t.startsWith('note:') || t.startsWith('!');
  }

  function sendTyping(active) {
    const c = state.current;
    if (!c || c.status !== 'open') return;
    api('POST', `conversations/${c.id}/typing`, { active }).catch(() => {});
  }

  function stopTyping() {
    clearTimeout(typingIdle);
    if (typingSentAt) {
      typingSentAt = 0;
      sendTyping(false);
    }
  }

  ui.reply.addEventListener('input', () => {
    const text = ui.reply.value;
    if (!text.trim() || isInternal(text)) {
      stopTyping(); // notes are not the visitor's business
      return;
    }
    const now = Date.now();
    if (now - typingSentAt > TYPING_SEND_MS) {
      typingSentAt = now;
      sendTyping(true);
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  });

  ui.reply.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.form.requestSubmit();
    } else if (event.key === 'Escape') {
      const current = ui.list.querySelector('.conv-item.selected');
      if (current) current.focus();
    }
  });

  ui.form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const c = state.current;
    const text = ui.reply.value.trim();
    if (!c || !text || ui.send.disabled) return;
    ui.send.disabled = true;
    ui.reply.readOnly = true;
    clearTimeout(typingIdle);
    typingSentAt = 0;
    try {
      const result = await api('POST', `conversations/${c.id}/messages`, { text });
      ui.reply.value = '';
      if (result.message && state.selected === c.id) addMessage(result.message);
      if (result.conversation) upsert(result.conversation);
    } catch (error) {
      report(error);
    } finally {
      ui.reply.readOnly = false;
      renderPane();
      if (!ui.reply.disabled) ui.reply.focus();
    }
  });

  // -- live frames -----------------------------------------------------------
  function previewOf(m) {
    return { seq: m.seq, from: m.from, author: m.author, text: m.text.slice(0, 160), internal: m.internal, created_at: m.created_at };
  }

  function onMessage(m) {
    const known = state.convs.get(m.conversation_id) || (state.current && state.current.id === m.conversation_id ? state.current : null);
    if (known) {
      if (m.seq >= known.last_seq) {
        known.last_seq = m.seq;
        known.last_message = previewOf(m);
        known.updated_at = m.created_at;
      }
      renderList();
    } else if (state.tab === 'open') {
      fetchConversation(m.conversation_id);
    }
    if (state.selected === m.conversation_id) {
      if (m.from === 'visitor') ui.typing.hidden = true;
      addMessage(m);
      markSeen();
    }
    updateTitle();
  }

  function onMessageUpdate(frame) {
    const m = frame.message;
    state.changes.set(m.id, frame.change);
    if (state.selected !== m.conversation_id || !state.messageIds.has(m.id)) return;
    state.messages = state.messages.map((old) => (old.id === m.id ? m : old));
    const stick = nearBottom();
    renderMessages();
    if (stick) scrollDown();
  }

  let visitorTypingTimer = null;
  function onTyping(frame) {
    if (frame.conversation_id !== state.selected) return;
    clearTimeout(visitorTypingTimer);
    ui.typing.hidden = !frame.active;
    if (frame.active) visitorTypingTimer = setTimeout(() => { ui.typing.hidden = true; }, VISITOR_TYPING_MS);
  }

  function onStatus(frame) {
    const w = state.widgets.get(frame.widget_id);
    if (w) {
      const { type: _t, widget_id: _w, key: _k, ...status } = frame;
      w.status = status;
      renderWidgets();
    } else {
      loadWidgets().catch(() => {});
    }
    refreshMeSoon(); // a widget flip often means our own availability changed
  }

  function onFrame(frame) {
    switch (frame.type) {
      case 'me': state.me = frame.agent; renderMe(); break;
      case 'message': onMessage(frame.message); break;
      case 'message_update': onMessageUpdate(frame); break;
      case 'conversation': upsert(frame.conversation); break;
      case 'typing': onTyping(frame); break;
      case 'status': onStatus(frame); break;
      case 'error': console.warn('console socket:', frame.code, frame.message); break;
      default: break;
    }
  }

  // -- the socket: connect, heartbeat, reconnect with backoff -------------
  let socket = null;
  let attempts = 0;
  let reconnectTimer = null;
  let connectedOnce = false;

  function setConnection(text, retry) {
    ui.connection.hidden = !text;
    ui.connection.replaceChildren();
    if (!text) return;
    ui.connection.append(text);
    if (retry) {
      const button = el('button', { type: 'button', class: 'link-button' }, 'Retry now');
      button.addEventListener('click', () => { clearTimeout(reconnectTimer); connect(); });
      ui.connection.append(' ', button);
    }
  }

  function heartbeat() {
    if (socket && socket.readyState === WebSocket.OPEN && document.visibilityState === 'visible') {
      socket.send(JSON.stringify({ type: 'heartbeat' }));
    }
  }

  function connect() {
    if (state.signedOut) return;
    clearTimeout(reconnectTimer);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/console/ws`);
    socket = ws;
    ws.addEventListener('open', () => {
      attempts = 0;
      setConnection(null);
      heartbeat();
      if (connectedOnce) reloadAll(); // catch up on anything missed while away
      connectedOnce = true;
    });
    ws.addEventListener('message', (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (_e) { return; }
      if (frame && typeof frame.type === 'string') onFrame(frame);
    });
    ws.addEventListener('close', (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === 4401) {
        signOutView();
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (state.signedOut) return;
    const base = Math.min(30000, 1000 * 2 ** attempts);
    const delay = base / 2 + Math.random() * (base / 2);
    attempts += 1;
    setConnection(`Connection lost. Reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`, true);
    reconnectTimer = setTimeout(connect, delay);
    if (attempts > 1) loadMe().catch(() => {}); // a 401 here means the session ended: stop retrying
  }

  setInterval(heartbeat, HEARTBEAT_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible') return;
    heartbeat();
    markSeen();
    renderList();
    refreshMeSoon();
  });
  setInterval(() => { if (document.visibilityState === 'visible') renderList(); }, 60000); // "5 min" ages

  // -- loading and signing out ---------------------------------------------
  async function reloadAll() {
    try {
      await loadMe();
      loadSeen();
      await Promise.all([loadWidgets(), loadList()]);
      if (state.selected) await select(state.selected, false);
    } catch (error) {
      report(error);
    }
  }

  function signOutView() {
    if (state.signedOut) return;
    state.signedOut = true;
    clearTimeout(reconnectTimer);
    if (socket) socket.close();
    socket = null;
    setConnection(null);
    ui.signedOut.hidden = false;
    for (const part of document.querySelectorAll('body > header, body > main, .skip')) part.inert = true;
    ui.signedOut.querySelector('.notice').setAttribute('tabindex', '-1');
    ui.signedOut.querySelector('.notice').focus();
    document.title = 'Signed out · deskbell console';
  }

  ui.logout.addEventListener('click', async () => {
    try {
      await api('POST', 'logout', {});
    } catch (error) {
      report(error);
      return;
    }
    signOutView();
  });

  async function start() {
    await reloadAll();
    if (state.signedOut) return;
    const wanted = /^#c(\d+)$/.exec(location.hash);
    if (wanted) select(Number(wanted[1]), false);
    connect();
  }

  start();
})();
