// Glueberry Chat: the web page of the demo. No framework: the DOM, the browser library
// (./vendor/glueberry-client.js, built from js-client/) and the chat protocol of web-demo/README.md.
//
// Reliability is the page's job (the library keeps a session going, not an application's
// delivery): every message has an id and stays in the outbox until the backend echoes it back;
// after a reconnect the page rejoins, merges the welcome history by id and re-sends what is
// still in the outbox. The backend drops repeated ids, the page ignores ids it already shows.

import { GlueberryClient, IndexedDbIdentityStore, loadOrCreateIdentity } from './vendor/glueberry-client.js';

const STREAM = 'chat';
const OUTBOX_LIMIT = 200; // unconfirmed messages kept for re-sending
const RESEND_AFTER_MS = 15_000; // re-send a message whose echo has not come back by then
const MAX_TEXT = 2000; // characters (code points), as the backend counts
const MAX_NICK = 32;
const ROOM_RE = /^[a-z0-9-]{1,32}$/;
// Printable: no control/format/unassigned characters and no separators other than the space
// (what Python's str.isprintable() accepts, which the backend checks).
const NICK_RE = /^(?:[^\p{C}\p{Z}]| )+$/u;
const BAD_TEXT_RE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10_000;
const ERROR_VISIBLE_MS = 15_000;

const params = new URLSearchParams(location.search);
// ?identity=NAME: several identities in one browser profile (e.g. two tabs as two people).
const identityName = params.get('identity') || 'chat-demo';
const backendParam = params.get('backend');
const storageKey = `glueberry-chat:${identityName}`;

// ---------------------------------------------------------------------------------------------
// The DOM.

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);
const ui = {
  app: $('app'),
  status: $('status'),
  roomTitle: $('room-title'),
  error: $('error'),
  joinForm: $('join-form'),
  nick: $('nick-input'),
  room: $('room-input'),
  join: $('join-button'),
  leave: $('leave-button'),
  members: $('members'),
  memberCount: $('member-count'),
  membersEmpty: $('members-empty'),
  ownPeerId: $('own-peer-id'),
  ownFingerprint: $('own-fingerprint'),
  backendPeerId: $('backend-peer-id'),
  backendFingerprint: $('backend-fingerprint'),
  scroller: $('scroller'),
  empty: $('empty-state'),
  messages: $('messages'),
  composer: $('composer'),
  input: $('message-input'),
  send: $('send-button'),
  sidebarToggle: $('sidebar-toggle'),
  openJoin: $('open-join'),
  backdrop: $('backdrop'),
};

// ---------------------------------------------------------------------------------------------
// State.

const state = {
  identity: null,
  client: null,
  session: null,
  room: null, // the room the user chose (and wants to be in)
  nick: null,
  joinedRoom: null, // the room of the last welcome on the current session
  joinPending: false,
  members: new Map(), // peer -> nick
  shown: new Map(), // `${from}\n${id}` -> <li>, confirmed messages of the room on screen
  outbox: new Map(), // id -> { room, id, text, sentAt, el }, insertion ordered
  lastTs: 0, // the newest server timestamp seen in this room
  status: 'connecting',
};

// ---------------------------------------------------------------------------------------------
// Helpers.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const jitter = (ms) => ms / 2 + Math.random() * (ms / 2);
const codePoints = (text) => [...text].length;

function newMessageId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function describe(error) {
  if (error === undefined || error === null) return 'unknown error';
  if (typeof error === 'string') return error;
  const code = error.code !== undefined ? ` (${error.code})` : '';
  return `${error.message || String(error)}${code}`;
}

function colorFor(peer) {
  let hash = 0;
  for (const ch of peer) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 48%)`;
}

function avatar(peer, nick) {
  const el = document.createElement('span');
  el.className = 'avatar';
  el.setAttribute('aria-hidden', 'true');
  el.style.background = colorFor(peer);
  // The initial is drawn by CSS (::before), so that it is not part of the element's text.
  el.dataset.initial = [...(nick || '?').trim()][0]?.toUpperCase() ?? '?';
  return el;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

function loadSaved() {
  try {
    return JSON.parse(localStorage.getItem(storageKey) || '{}') || {};
  } catch {
    return {};
  }
}

function save(values) {
  try {
    localStorage.setItem(storageKey, JSON.stringify({ ...loadSaved(), ...values }));
  } catch {
    // private mode or storage full: the page works without it
  }
}

// The outbox survives a reload (localStorage), so that a message written while offline is not
// lost when the page is reloaded before it could be delivered.
const outboxKey = `${storageKey}:outbox`;

function persistOutbox() {
  try {
    const items = [...state.outbox.values()].map(({ room, id, text }) => ({ room, id, text }));
    if (items.length) localStorage.setItem(outboxKey, JSON.stringify(items));
    else localStorage.removeItem(outboxKey);
  } catch {
    // storage full or unavailable: the outbox still works for this page's lifetime
  }
}

function restoreOutbox() {
  let items = [];
  try {
    items = JSON.parse(localStorage.getItem(outboxKey) || '[]');
  } catch {
    return;
  }
  if (!Array.isArray(items)) return;
  for (const item of items.slice(-OUTBOX_LIMIT)) {
    if (item && typeof item.id === 'string' && typeof item.room === 'string' && typeof item.text === 'string') {
      state.outbox.set(item.id, { room: item.room, id: item.id, text: item.text, sentAt: 0, el: null });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Status and errors.

let errorTimer = 0;

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    ui.error.hidden = true;
  }, ERROR_VISIBLE_MS);
  console.warn('[chat]', text);
}

function clearError() {
  clearTimeout(errorTimer);
  ui.error.hidden = true;
  ui.error.textContent = '';
}

// One word for people and tests: connecting, connected, resuming, offline (closed: gave up).
function computeStatus() {
  const client = state.client;
  if (!client) return state.status === 'offline' ? 'offline' : 'connecting';
  switch (client.state) {
    case 'offline':
      return 'offline';
    case 'resuming':
      return 'resuming';
    case 'closed':
      return state.status === 'offline' ? 'offline' : 'connecting';
    case 'connecting':
      return 'connecting';
    default:
      break;
  }
  const session = state.session;
  if (!session || session.state === 'closed') return 'connecting';
  if (session.state === 'resuming') return 'resuming';
  return 'connected';
}

function updateStatus(forced) {
  const status = forced ?? computeStatus();
  if (status === 'connected' && state.status !== 'connected') clearError(); // connection trouble is over
  state.status = status;
  ui.status.dataset.state = status;
  ui.status.textContent = status;
  const detail = {
    connecting: 'Connecting to the chat backend…',
    connected: 'Connected: end-to-end encrypted session with the chat backend',
    resuming: 'Connection interrupted: resuming…',
    offline: 'Offline: the gateway cannot be reached; retrying',
  }[status];
  ui.status.title = detail ?? status;
  updateControls();
}

function updateControls() {
  const inRoom = state.room !== null;
  ui.input.disabled = !inRoom;
  ui.send.disabled = !inRoom;
  ui.leave.disabled = !inRoom;
  ui.input.placeholder = inRoom ? `Message #${state.room}` : 'Join a room to chat';
  ui.roomTitle.textContent = inRoom ? `#${state.room}` : 'no room';
  ui.roomTitle.classList.toggle('muted', !inRoom);
  ui.app.dataset.joined = state.joinedRoom ?? '';
  ui.app.dataset.outbox = String(state.outbox.size);
  ui.empty.hidden = inRoom;
}

// ---------------------------------------------------------------------------------------------
// Messages on screen.

function scrolledToBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
}

function messageElement({ id, from, nick, text, ts }, own) {
  const li = document.createElement('li');
  li.className = own ? 'message own' : 'message';
  li.dataset.testid = 'message';
  li.dataset.id = id;
  li.dataset.from = from;
  const row = document.createElement('div');
  row.className = 'row';
  if (!own) row.append(avatar(from, nick));
  const body = document.createElement('div');
  body.className = 'body';
  const meta = document.createElement('div');
  meta.className = 'meta';
  const name = document.createElement('span');
  name.className = 'nick';
  name.dataset.testid = 'message-nick';
  name.textContent = own ? 'You' : nick;
  name.title = from;
  const time = document.createElement('time');
  time.dataset.testid = 'message-time';
  meta.append(name, time);
  const bubble = document.createElement('div');
  bubble.className = 'bubble';
  bubble.dataset.testid = 'message-text';
  bubble.textContent = text;
  body.append(meta, bubble);
  row.append(body);
  li.append(row);
  setMessageTime(li, ts);
  return li;
}

function setMessageTime(li, ts) {
  const time = li.querySelector('time');
  if (ts === undefined) {
    li.ts = Infinity; // pending: after every confirmed message
    time.textContent = 'sending…';
    time.removeAttribute('datetime');
    return;
  }
  li.ts = ts;
  const date = new Date(ts);
  time.dateTime = date.toISOString();
  time.textContent = timeFormat.format(date);
  time.title = date.toLocaleString();
}

// Confirmed messages are ordered by the backend's timestamp (strictly increasing in a room);
// pending ones (ts = Infinity) stay at the end in the order they were written.
// A message already in the list (a pending one, now confirmed) moves to its place.
function insertByTime(li) {
  const oldNext = li.parentNode === ui.messages ? li.nextElementSibling : null;
  let before = null;
  for (let node = ui.messages.lastElementChild; node; node = node.previousElementSibling) {
    if (node === li) continue;
    if (node.ts <= li.ts) break;
    before = node;
  }
  ui.messages.insertBefore(li, before);
  regroup(oldNext);
  placed(li);
}

// Consecutive messages of one sender within a few minutes form a group: one name and avatar.
const GROUP_MS = 5 * 60_000;

function regroup(li) {
  if (!li || !li.classList.contains('message')) return;
  const prev = li.previousElementSibling;
  const grouped =
    prev !== null &&
    prev.classList.contains('message') &&
    prev.dataset.from === li.dataset.from &&
    prev.dataset.state !== 'failed' &&
    li.dataset.state !== 'failed' &&
    (li.ts === Infinity || (prev.ts !== Infinity && li.ts - prev.ts < GROUP_MS));
  li.classList.toggle('grouped', grouped);
}

function placed(li) {
  regroup(li);
  regroup(li.nextElementSibling);
}

function addNotice(text) {
  const li = document.createElement('li');
  li.className = 'notice';
  li.dataset.testid = 'notice';
  li.textContent = text;
  li.ts = state.lastTs; // after the newest message we know of
  const stick = scrolledToBottom();
  insertByTime(li);
  if (stick) scrollToBottom();
}

// A message from the backend (live or from a welcome history): shown once per (sender, id).
function addMessage(m) {
  if (m.room !== state.room) return;
  const key = `${m.from}\n${m.id}`;
  if (state.shown.has(key)) return;
  const own = m.from === state.identity.peerId;
  const stick = scrolledToBottom() || own;
  let li;
  const pending = own ? state.outbox.get(m.id) : undefined;
  if (pending) {
    state.outbox.delete(m.id);
    persistOutbox();
  }
  if (pending?.el) {
    li = pending.el;
    li.dataset.state = 'sent';
    setMessageTime(li, m.ts);
  } else {
    li = messageElement(m, own);
    li.dataset.state = 'sent';
  }
  state.shown.set(key, li);
  state.lastTs = Math.max(state.lastTs, m.ts);
  insertByTime(li);
  if (stick) scrollToBottom();
  updateControls();
}

function showPending(item) {
  const li = messageElement({ id: item.id, from: state.identity.peerId, nick: state.nick, text: item.text }, true);
  li.dataset.state = 'pending';
  item.el = li;
  insertByTime(li);
  scrollToBottom();
}

function markFailed(id, reason) {
  const item = state.outbox.get(id);
  if (!item) return;
  state.outbox.delete(id);
  persistOutbox();
  updateControls();
  if (!item.el) return;
  item.el.dataset.state = 'failed';
  placed(item.el);
  const time = item.el.querySelector('time');
  time.textContent = 'not sent';
  item.el.title = reason;
}

function clearRoomView() {
  ui.messages.replaceChildren();
  state.shown.clear();
  state.members.clear();
  state.lastTs = 0;
  renderMembers();
  // What is still unsent for this room shows again as pending.
  for (const item of state.outbox.values()) {
    if (item.room === state.room) showPending(item);
  }
}

function renderMembers() {
  const me = state.identity?.peerId;
  const items = [...state.members].map(([peer, nick]) => {
    const li = document.createElement('li');
    li.className = 'member';
    li.dataset.testid = 'member';
    li.dataset.peer = peer;
    li.title = peer;
    if (peer === me) li.classList.add('me'); // "you" is drawn by CSS: the text is the nick alone
    const name = document.createElement('span');
    name.className = 'nick';
    name.dataset.testid = 'member-nick';
    name.textContent = nick;
    li.append(avatar(peer, nick), name);
    return li;
  });
  ui.members.replaceChildren(...items);
  ui.memberCount.textContent = String(state.members.size);
  ui.membersEmpty.hidden = state.members.size > 0;
}

// ---------------------------------------------------------------------------------------------
// The chat protocol.

function sessionOpen() {
  return state.session !== null && state.session.state === 'open';
}

function sendProtocol(message) {
  const session = state.session;
  if (!session) return Promise.resolve(false);
  return session.send(STREAM, JSON.stringify(message)).then(
    () => true,
    (error) => {
      console.info('[chat] send failed (will retry after reconnecting):', describe(error));
      return false;
    },
  );
}

function sendJoin() {
  if (!state.room || !sessionOpen()) return;
  state.joinedRoom = null;
  state.joinPending = true;
  updateControls();
  sendProtocol({ t: 'join', room: state.room, nick: state.nick });
}

function transmit(item) {
  if (!sessionOpen() || state.joinedRoom !== item.room) return; // goes out after the next welcome
  item.sentAt = Date.now();
  sendProtocol({ t: 'msg', room: item.room, id: item.id, text: item.text }).then((ok) => {
    if (!ok) item.sentAt = 0;
  });
}

function onProtocolMessage(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    console.warn('[chat] ignored a message that is not JSON');
    return;
  }
  if (m === null || typeof m !== 'object') return;
  switch (m.t) {
    case 'welcome':
      onWelcome(m);
      break;
    case 'msg':
      if (typeof m.id === 'string' && typeof m.from === 'string' && typeof m.ts === 'number') addMessage(m);
      break;
    case 'joined':
      if (m.room !== state.room) break;
      if (!state.members.has(m.peer)) addNotice(`${m.nick} joined`);
      else if (state.members.get(m.peer) !== m.nick) addNotice(`${state.members.get(m.peer)} is now ${m.nick}`);
      state.members.set(m.peer, m.nick);
      renderMembers();
      break;
    case 'left':
      if (m.room !== state.room || m.peer === state.identity.peerId) break;
      if (state.members.delete(m.peer)) addNotice(`${m.nick} left`);
      renderMembers();
      break;
    case 'error':
      onBackendError(m);
      break;
    default:
      console.info('[chat] ignored message type', m.t);
  }
}

function onWelcome(m) {
  if (m.room !== state.room) return; // the welcome of a room we left since
  const first = state.joinedRoom !== m.room && state.members.size === 0;
  state.joinedRoom = m.room;
  state.joinPending = false;
  state.members = new Map((m.members || []).map((x) => [x.peer, x.nick]));
  renderMembers();
  for (const h of m.history || []) addMessage(h); // merged by id: nothing doubled, nothing lost
  for (const item of state.outbox.values()) {
    if (item.room === m.room) transmit(item);
  }
  if (first) addNotice(`You joined #${m.room}`);
  save({ nick: state.nick, room: state.room, joined: true });
  updateControls();
}

function onBackendError(m) {
  const text = typeof m.text === 'string' ? m.text : 'the chat backend refused a request';
  if (m.code === 'not_member' && m.room === state.room) {
    // The backend forgot us (e.g. it restarted): join again; the outbox goes out after.
    if (typeof m.id === 'string') {
      const item = state.outbox.get(m.id);
      if (item) item.sentAt = 0;
    }
    if (!state.joinPending) sendJoin();
    return;
  }
  if (typeof m.id === 'string') markFailed(m.id, text);
  if (['room_full', 'too_many_rooms', 'too_many_joins'].includes(m.code) && m.room === state.room) {
    state.joinPending = false;
  }
  showError(text);
}

// ---------------------------------------------------------------------------------------------
// The connection: client (gateway socket), then a session with the chat backend.

let tokenMode; // undefined: not known yet; false: the server has no /token; true: tokens

async function fetchToken() {
  if (tokenMode === false) return undefined;
  const response = await fetch(`/token?peer=${encodeURIComponent(state.identity.peerId)}`, { cache: 'no-store' });
  if (response.status === 404 || response.status === 204) {
    tokenMode = false;
    return undefined;
  }
  if (!response.ok) throw new Error(`the token service answered HTTP ${response.status}`);
  const body = await response.json();
  if (typeof body.token !== 'string') throw new Error('the token service sent no token');
  tokenMode = true;
  return body.token;
}

function gatewayUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

let connecting = false;

async function connect() {
  if (connecting) return;
  connecting = true;
  let delay = RECONNECT_MIN_MS;
  try {
    for (;;) {
      updateStatus(state.status === 'offline' ? 'offline' : 'connecting');
      try {
        const options = { identity: state.identity, streams: [STREAM], handshakeName: 'glueberry-chat-web' };
        const token = await fetchToken();
        if (token !== undefined) {
          options.token = token;
          options.refreshToken = async () => {
            const fresh = await fetchToken();
            if (fresh === undefined) throw new Error('the token service went away');
            return fresh;
          };
        }
        const client = await GlueberryClient.connect(gatewayUrl(), options);
        adoptClient(client);
        clearError();
        break;
      } catch (error) {
        showError(`Cannot reach the gateway: ${describe(error)}. Retrying…`);
        updateStatus('offline');
        await sleep(jitter(delay));
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      }
    }
  } finally {
    connecting = false;
  }
  await openSession();
}

function adoptClient(client) {
  state.client = client;
  client.on('state', ({ state: now }) => {
    if (client !== state.client) return;
    // Back after a dropped socket, the session's own 'open' (resumed or reopened) rejoins.
    if (now === 'closed') {
      // The library gave up (or the token expired without refresh): start over.
      state.client = null;
      dropSession();
      updateStatus('connecting');
      setTimeout(connect, jitter(RECONNECT_MIN_MS * 2));
      return;
    }
    if (now !== 'connected') {
      state.joinedRoom = null; // rejoin once the session is open again
    }
    updateStatus();
  });
  client.on('error', ({ error }) => {
    if (client === state.client) showError(`Gateway: ${describe(error)}`);
  });
  client.on('drain', ({ reconnectAfterMs }) => {
    if (client === state.client) showError(`The gateway is restarting; reconnecting in ${Math.round(reconnectAfterMs / 100) / 10} s…`);
  });
  updateStatus();
}

function dropSession() {
  state.session = null;
  state.joinedRoom = null;
  state.joinPending = false;
}

let opening = false;

async function openSession() {
  if (opening) return;
  opening = true;
  let delay = RECONNECT_MIN_MS;
  try {
    while (state.client && !state.session) {
      const client = state.client;
      if (client.state === 'closed') return;
      const backend = backendParam || client.backends?.[0]?.name;
      if (!backend) {
        showError('The gateway offers no chat backend to this page.');
        await sleep(jitter(RECONNECT_MAX_MS));
        continue;
      }
      updateStatus();
      try {
        const session = await client.open(backend, { timeout: 15_000 });
        if (client !== state.client) {
          session.close().catch(() => {});
          return;
        }
        adoptSession(session);
        clearError();
        return;
      } catch (error) {
        if (client !== state.client) return;
        showError(`Cannot open a session with the chat backend “${backend}”: ${describe(error)}. Retrying…`);
        await sleep(jitter(delay));
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      }
    }
  } finally {
    opening = false;
  }
}

function adoptSession(session) {
  state.session = session;
  ui.backendPeerId.textContent = session.peerId;
  ui.backendFingerprint.textContent = session.fingerprint;
  ui.backendFingerprint.title = session.peerName ? `calls itself “${session.peerName}”` : '';
  session.on('message', ({ stream, text }) => {
    if (session === state.session && stream === STREAM) onProtocolMessage(text);
  });
  session.on('state', ({ state: now }) => {
    if (session !== state.session) return;
    if (now === 'open') {
      // Resumed, or reopened with a new handshake after a failed resume: rejoin either way;
      // the welcome's history fills any gap and the outbox goes out again.
      sendJoin();
    } else {
      state.joinedRoom = null;
    }
    if (now === 'closed') onSessionClosed(session); // the 'closed' event follows; nothing more to do
    updateStatus();
  });
  session.on('error', ({ error }) => {
    if (session === state.session) showError(`Session: ${describe(error)}`);
  });
  updateStatus();
  sendJoin();
}

function onSessionClosed(session) {
  if (session !== state.session) return;
  dropSession();
  updateStatus();
  // The backend went away (restart, crash) or the gateway closed the session: open a new one.
  setTimeout(openSession, jitter(RECONNECT_MIN_MS * 2));
}

// Messages whose echo is overdue go out again (the backend drops repeats by id).
setInterval(() => {
  const now = Date.now();
  for (const item of state.outbox.values()) {
    if (item.room === state.room && item.sentAt !== 0 && now - item.sentAt > RESEND_AFTER_MS) transmit(item);
  }
}, 5_000);

// ---------------------------------------------------------------------------------------------
// User actions.

function validNick(nick) {
  return nick.length > 0 && codePoints(nick) <= MAX_NICK && NICK_RE.test(nick);
}

function joinRoom(nick, room) {
  nick = nick.trim();
  room = room.trim().toLowerCase();
  ui.nick.value = nick;
  ui.room.value = room;
  if (!validNick(nick)) {
    showError(`A nickname is 1–${MAX_NICK} printable characters.`);
    ui.nick.focus();
    return false;
  }
  if (!ROOM_RE.test(room)) {
    showError('A room name is 1–32 characters: a–z, 0–9 and “-”.');
    ui.room.focus();
    return false;
  }
  clearError();
  if (state.room && state.room !== room && sessionOpen()) {
    sendProtocol({ t: 'leave', room: state.room });
  }
  const changed = state.room !== room;
  state.room = room;
  state.nick = nick;
  save({ nick, room, joined: true });
  if (changed) {
    state.joinedRoom = null;
    clearRoomView();
    const url = new URL(location.href);
    url.searchParams.set('room', room);
    history.replaceState(null, '', url);
  }
  updateControls();
  sendJoin(); // when the session is not open yet, it joins as soon as it is
  closeSidebar();
  ui.input.focus();
  return true;
}

function leaveRoom() {
  if (!state.room) return;
  if (sessionOpen()) sendProtocol({ t: 'leave', room: state.room });
  state.room = null;
  state.joinedRoom = null;
  state.joinPending = false;
  clearRoomView();
  save({ joined: false });
  const url = new URL(location.href);
  url.searchParams.delete('room');
  history.replaceState(null, '', url);
  updateControls();
}

function sendMessage() {
  const text = ui.input.value;
  if (!text.trim()) return;
  if (!state.room) {
    showError('Join a room first.');
    return;
  }
  if (codePoints(text) > MAX_TEXT) {
    showError(`A message is at most ${MAX_TEXT} characters (this one has ${codePoints(text)}).`);
    return;
  }
  if (BAD_TEXT_RE.test(text)) {
    showError('The message contains control characters.');
    return;
  }
  if (state.outbox.size >= OUTBOX_LIMIT) {
    showError(`${OUTBOX_LIMIT} messages are still waiting to be delivered; wait for the connection.`);
    return;
  }
  const item = { room: state.room, id: newMessageId(), text, sentAt: 0, el: null };
  state.outbox.set(item.id, item);
  persistOutbox();
  showPending(item);
  ui.input.value = '';
  autosize();
  updateControls();
  transmit(item);
}

function autosize() {
  ui.input.style.height = 'auto';
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 160)}px`;
}

function openSidebar() {
  ui.app.classList.add('sidebar-open');
  ui.sidebarToggle.setAttribute('aria-expanded', 'true');
  ui.backdrop.hidden = false;
}

function closeSidebar() {
  ui.app.classList.remove('sidebar-open');
  ui.sidebarToggle.setAttribute('aria-expanded', 'false');
  ui.backdrop.hidden = true;
}

ui.joinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  joinRoom(ui.nick.value, ui.room.value);
});
ui.room.addEventListener('input', () => {
  const lower = ui.room.value.toLowerCase().replace(/\s/g, '-');
  if (lower !== ui.room.value) ui.room.value = lower;
});
ui.leave.addEventListener('click', leaveRoom);
ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  sendMessage();
});
ui.input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendMessage();
  }
});
ui.input.addEventListener('input', autosize);
ui.sidebarToggle.addEventListener('click', () => {
  if (ui.app.classList.contains('sidebar-open')) closeSidebar();
  else openSidebar();
});
ui.openJoin.addEventListener('click', () => {
  openSidebar();
  ui.nick.value ? ui.room.focus() : ui.nick.focus();
});
ui.backdrop.addEventListener('click', closeSidebar);

// For tests and the curious: read-only views of the page's state.
window.glueberryChat = Object.freeze({
  get peerId() { return state.identity?.peerId; },
  get status() { return state.status; },
  get room() { return state.room; },
  get joinedRoom() { return state.joinedRoom; },
  get outbox() { return [...state.outbox.values()].map(({ room, id, text }) => ({ room, id, text })); },
  get client() { return state.client; },
  get session() { return state.session; },
});

// ---------------------------------------------------------------------------------------------
// Start.

async function main() {
  updateStatus('connecting');
  const saved = loadSaved();
  restoreOutbox();
  ui.nick.value = saved.nick ?? '';
  ui.room.value = params.get('room') ?? saved.room ?? 'lobby';
  try {
    state.identity = await loadOrCreateIdentity(new IndexedDbIdentityStore({ name: identityName }));
  } catch (error) {
    showError(`Cannot load or store this page's key (IndexedDB): ${describe(error)}`);
    updateStatus('offline');
    return;
  }
  ui.ownPeerId.textContent = state.identity.peerId;
  ui.ownFingerprint.textContent = state.identity.fingerprint;
  // After a reload, go back to the room we were in.
  const autoJoin = saved.joined && saved.nick && ROOM_RE.test(ui.room.value);
  if (autoJoin) joinRoom(saved.nick, ui.room.value);
  else if (matchMedia('(max-width: 760px)').matches) openSidebar();
  updateControls();
  await connect();
}

main().catch((error) => {
  showError(`The page failed to start: ${describe(error)}`);
  console.error(error);
});
