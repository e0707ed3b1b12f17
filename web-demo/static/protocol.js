// The chat protocol of web-demo/README.md on the session's "chat" stream: join, msg and leave
// out; welcome, msg, joined, left and error in. Sending needs an open session; what cannot go
// out now stays in the outbox and goes out after the next welcome (or when it is overdue).

import { RESEND_AFTER_MS, STREAM } from './config.js';
import { addMessage, addNotice, markFailed } from './messages.js';
import { renderMembers } from './members.js';
import { state } from './state.js';
import { describe, showError, updateControls } from './status.js';
import { save } from './storage.js';

export function sessionOpen() {
  return state.session !== null && state.session.state === 'open';
}

/** @returns {Promise<boolean>} whether the session took the message (false: retry later) */
export function sendProtocol(message) {
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

export function sendJoin() {
  if (!state.room || !sessionOpen()) return;
  state.joinedRoom = null;
  state.joinPending = true;
  updateControls();
  sendProtocol({ t: 'join', room: state.room, nick: state.nick });
}

/** @param {import('./state.js').OutboxItem} item */
export function transmit(item) {
  if (!sessionOpen() || state.joinedRoom !== item.room) return; // goes out after the next welcome
  item.sentAt = Date.now();
  sendProtocol({ t: 'msg', room: item.room, id: item.id, text: item.text }).then((ok) => {
    if (!ok) item.sentAt = 0;
  });
}

/** @param {string} text one message of the chat stream, as the session decrypted it */
export function onProtocolMessage(text) {
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

// Messages whose echo is overdue go out again (the backend drops repeats by id).
export function startResending() {
  setInterval(() => {
    const now = Date.now();
    for (const item of state.outbox.values()) {
      if (item.room === state.room && item.sentAt !== 0 && now - item.sentAt > RESEND_AFTER_MS) transmit(item);
    }
  }, 5_000);
}
