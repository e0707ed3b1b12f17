// The message list of the room on screen: confirmed messages in the backend's order, pending
// ones (still in the outbox) after them, notices such as "Grace joined" in between.
// A message is shown once per (sender, id), however many times it arrives (live, in a welcome's
// history, echoed back after a re-send).

import { avatar } from './avatar.js';
import { ui } from './dom.js';
import { renderMembers } from './members.js';
import { state } from './state.js';
import { updateControls } from './status.js';
import { persistOutbox } from './storage.js';

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

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

export function addNotice(text) {
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
export function addMessage(m) {
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

/** @param {import('./state.js').OutboxItem} item */
export function showPending(item) {
  const li = messageElement({ id: item.id, from: state.identity.peerId, nick: state.nick, text: item.text }, true);
  li.dataset.state = 'pending';
  item.el = li;
  insertByTime(li);
  scrollToBottom();
}

// The backend refused the message: out of the outbox (re-sending would not help), kept on
// screen as not sent, with the reason as its tooltip.
export function markFailed(id, reason) {
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

export function clearRoomView() {
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
