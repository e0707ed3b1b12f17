// What the page is set to: the chat stream, its timings and the URL parameters it reads.
// The chat protocol's own bounds (room names, nicks, text) are in bounds.js.

export const STREAM = 'chat';
export const OUTBOX_LIMIT = 200; // unconfirmed messages kept for re-sending
export const RESEND_AFTER_MS = 15_000; // re-send a message whose echo has not come back by then
export const RECONNECT_MIN_MS = 500;
export const RECONNECT_MAX_MS = 10_000;
export const ERROR_VISIBLE_MS = 15_000;

export const params = new URLSearchParams(location.search);
// ?identity=NAME: several identities in one browser profile (e.g. two tabs as two people).
export const identityName = params.get('identity') || 'chat-demo';
export const backendParam = params.get('backend');
export const storageKey = `glueberry-chat:${identityName}`;
