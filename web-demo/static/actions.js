// What a person does on the page: join (or switch) a room, leave it, send a message, open and
// close the drawer. Input is checked here against the protocol's bounds before anything goes out.

import { BAD_TEXT_RE, MAX_NICK, MAX_TEXT, ROOM_RE, codePoints, validNick } from './bounds.js';
import { OUTBOX_LIMIT } from './config.js';
import { ui } from './dom.js';
import { clearRoomView, showPending } from './messages.js';
import { sendJoin, sendProtocol, sessionOpen, transmit } from './protocol.js';
import { state } from './state.js';
import { clearError, showError, updateControls } from './status.js';
import { persistOutbox, save } from './storage.js';

function newMessageId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @returns {boolean} false when the nick or the room is not valid (the error line says why) */
export function joinRoom(nick, room) {
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

// Into the outbox first (and localStorage), on screen as pending, then out if the room is
// joined on an open session; the backend's echo confirms it (protocol.js, messages.js).
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

// On narrow screens (≤ 760 px, style.css) the join form, members and keys are in a drawer.
export function openSidebar() {
  ui.app.classList.add('sidebar-open');
  ui.sidebarToggle.setAttribute('aria-expanded', 'true');
  ui.backdrop.hidden = false;
}

function closeSidebar() {
  ui.app.classList.remove('sidebar-open');
  ui.sidebarToggle.setAttribute('aria-expanded', 'false');
  ui.backdrop.hidden = true;
}

export function bindUserActions() {
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
}
