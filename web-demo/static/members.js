// The member list of the room on screen, drawn from state.members.

import { avatar } from './avatar.js';
import { ui } from './dom.js';
import { state } from './state.js';

export function renderMembers() {
  const me = state.identity?.peerId;
  const items = [...state.members].map(([peer, nick]) => {
    const li = document.createElement('li');
    li.className = 'member';
    li.dataset.testid = 'member';
    li.dataset.peer = peer;
    li.title = peer;
    if (peer === me) li.classList.add('me'); // "you" is drawn by CSS: the text is the nick alone
    const name = document.createElement('span');
    name.className = 'nick';
    name.dataset.testid = 'member-nick';
    name.textContent = nick;
    li.append(avatar(peer, nick), name);
    return li;
  });
  ui.members.replaceChildren(...items);
  ui.memberCount.textContent = String(state.members.size);
  ui.membersEmpty.hidden = state.members.size > 0;
}
