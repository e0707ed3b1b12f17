// The status word, the error line, and the controls that follow the state (what is enabled,
// the room title, the data-joined / data-outbox attributes tests wait on).

import { ERROR_VISIBLE_MS } from './config.js';
import { ui } from './dom.js';
import { state } from './state.js';

/** An error (or anything thrown) as one line of text for people. */
export function describe(error) {
  if (error === undefined || error === null) return 'unknown error';
  if (typeof error === 'string') return error;
  const code = error.code !== undefined ? ` (${error.code})` : '';
  return `${error.message || String(error)}${code}`;
}

let errorTimer = 0;

export function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    ui.error.hidden = true;
  }, ERROR_VISIBLE_MS);
  console.warn('[chat]', text);
}

export function clearError() {
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

/** @param {string} [forced] a status to show instead of the one the client and session give */
export function updateStatus(forced) {
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

export function updateControls() {
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
