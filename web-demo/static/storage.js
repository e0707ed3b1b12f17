// What the page keeps in localStorage, per identity: the nickname, the room and whether it was
// joined (a reload goes back in), and the outbox.

import { OUTBOX_LIMIT, storageKey } from './config.js';
import { state } from './state.js';

export function loadSaved() {
  try {
    return JSON.parse(localStorage.getItem(storageKey) || '{}') || {};
  } catch {
    return {};
  }
}

export function save(values) {
  try {
    localStorage.setItem(storageKey, JSON.stringify({ ...loadSaved(), ...values }));
  } catch {
    // private mode or storage full: the page works without it
  }
}

// The outbox survives a reload (localStorage), so that a message written while offline is not
// lost when the page is reloaded before it could be delivered.
const outboxKey = `${storageKey}:outbox`;

export function persistOutbox() {
  try {
    const items = [...state.outbox.values()].map(({ room, id, text }) => ({ room, id, text }));
    if (items.length) localStorage.setItem(outboxKey, JSON.stringify(items));
    else localStorage.removeItem(outboxKey);
  } catch {
    // storage full or unavailable: the outbox still works for this page's lifetime
  }
}

export function restoreOutbox() {
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
