// Glueberry Chat: the web page of the demo. No framework: the DOM, the browser library
// (./vendor/glueberry-client.js, built from js-client/) and the chat protocol of web-demo/README.md.
//
// Reliability is the page's job (the library keeps a session going, not an application's
// delivery): every message has an id and stays in the outbox until the backend echoes it back;
// after a reconnect the page rejoins, merges the welcome history by id and re-sends what is
// still in the outbox. The backend drops repeated ids, the page ignores ids it already shows.
//
// This is the entry module (index.html loads it); the modules import one way, from here down:
//   app.js         start-up, and window.glueberryChat for tests
//   actions.js     join, leave, send, the drawer
//   connection.js  gateway client and chat session, reconnects
//   protocol.js    the chat protocol on the "chat" stream
//   messages.js, members.js, avatar.js   the room on screen
//   status.js      status word, error line, controls
//   storage.js     localStorage: nick, room, outbox
//   config.js, bounds.js, dom.js, state.js   settings, limits, elements, state
// web-demo/test/modules.test.mjs fails on an import circle or a module over 500 lines.

import { IndexedDbIdentityStore, loadOrCreateIdentity } from './vendor/glueberry-client.js';
import { bindUserActions, joinRoom, openSidebar } from './actions.js';
import { ROOM_RE } from './bounds.js';
import { identityName, params } from './config.js';
import { connect } from './connection.js';
import { ui } from './dom.js';
import { startResending } from './protocol.js';
import { state } from './state.js';
import { describe, showError, updateControls, updateStatus } from './status.js';
import { loadSaved, restoreOutbox } from './storage.js';

startResending();
bindUserActions();

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
