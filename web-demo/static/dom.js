// The page's elements, found once by their data-testid (the names tests use too, listed in
// web-demo/README.md). Modules are deferred, so the document is parsed when this runs.

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

export const ui = {
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
