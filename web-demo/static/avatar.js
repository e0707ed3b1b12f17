// A person's round avatar, in the message list and the member list: a colour from the peer ID
// (the same person looks the same everywhere) and the nick's initial.

function colorFor(peer) {
  let hash = 0;
  for (const ch of peer) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 48%)`;
}

export function avatar(peer, nick) {
  const el = document.createElement('span');
  el.className = 'avatar';
  el.setAttribute('aria-hidden', 'true');
  el.style.background = colorFor(peer);
  // The initial is drawn by CSS (::before), so that it is not part of the element's text.
  el.dataset.initial = [...(nick || '?').trim()][0]?.toUpperCase() ?? '?';
  return el;
}
