// The connection: a client (the gateway socket), then a session with the chat backend on it.
// The library resumes both across short drops; this module starts over when it gives up
// (a new client, or a new session on the same client), retrying with jittered backoff.

import { GlueberryClient } from './vendor/glueberry-client.js';
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS, STREAM, backendParam } from './config.js';
import { ui } from './dom.js';
import { onProtocolMessage, sendJoin } from './protocol.js';
import { state } from './state.js';
import { clearError, describe, showError, updateStatus } from './status.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const jitter = (ms) => ms / 2 + Math.random() * (ms / 2);

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

/** Connect to the gateway (retrying until it answers), then open the session. */
export async function connect() {
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
