// The page's one state object. Every module reads and changes it in place; only app.js hands
// out a read-only view of it (window.glueberryChat, for tests).

/**
 * A message written on this page and not yet echoed back by the backend.
 * @typedef {object} OutboxItem
 * @property {string} room
 * @property {string} id random, chosen here; the backend drops a repeated (sender, id)
 * @property {string} text
 * @property {number} sentAt Date.now() of the last send, 0 when it still has to go out
 * @property {HTMLLIElement | null} el its pending element on screen, if its room is shown
 */

export const state = {
  identity: null,
  client: null,
  session: null,
  room: null, // the room the user chose (and wants to be in)
  nick: null,
  joinedRoom: null, // the room of the last welcome on the current session
  joinPending: false,
  members: new Map(), // peer -> nick
  shown: new Map(), // `${from}\n${id}` -> <li>, confirmed messages of the room on screen
  /** @type {Map<string, OutboxItem>} id -> item, insertion ordered */
  outbox: new Map(),
  lastTs: 0, // the newest server timestamp seen in this room
  status: 'connecting',
};
