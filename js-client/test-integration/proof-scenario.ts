// The "proof" handshake of tests/interop/cmd/proof-peer (a real Go glueberry v1.2.10 service with
// an application handshake of its own), reached through a real gateway by js-client with
// examples/proof-handshake.ts: the handshake and its app data, messages on every stream both
// ways, a resume after a cut socket, a new session after the service restarted, and an impostor
// whose key is not its peer ID refused. Run in Node (proof-node.ts) and in Chromium
// (proof-browser.ts) by tests/gateway/test_proof_handshake.py, which provides the hooks.
import { proofHandshake } from '../examples/proof-handshake.js';
import { GlueberryClient, Identity, KeyMismatchError, type Session, type WebSocketConstructor } from '../src/index.js';

export const STREAMS = ['alpha', 'beta', 'gamma'];

export interface Hooks {
  /** Cut the client's socket like a network failure (the test's TCP proxy). */
  cut(): Promise<void>;
  /** Restart the Go service (same key and address). */
  restart(): Promise<void>;
}

export interface ProofResult {
  info: Readonly<Record<string, unknown>>;
  welcome: string;
  echoes: string[];
  afterCut: string[];
  states: string[];
  closedCode: number | undefined;
  reopened: string[];
  impostor: string;
}

const within = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), ms))]);

/** The next `n` messages of `session`, as `stream|text`. */
async function take(session: Session, n: number, what: string): Promise<string[]> {
  const inbox = session[Symbol.asyncIterator]();
  const out: string[] = [];
  try {
    while (out.length < n) {
      const next = await within(inbox.next(), 10_000, what);
      if (next.done) throw new Error(`session ended during ${what}`);
      out.push(`${next.value.stream}|${next.value.text}`);
    }
  } finally {
    await inbox.return?.();
  }
  return out;
}

export async function proofScenario(
  url: string,
  name: string,
  hooks: Hooks,
  options: { origin?: string; WebSocket?: WebSocketConstructor } = {},
): Promise<ProofResult> {
  const states: string[] = [];
  const client = await GlueberryClient.connect(url, {
    identity: Identity.generate(),
    streams: STREAMS,
    handshake: proofHandshake({ name }),
    reconnectDelay: 50,
    ...options,
  });
  client.on('state', ({ state, code }) => states.push(code === undefined ? state : `${state} ${code}`));
  try {
    const session = await within(client.open('proof'), 15_000, 'open proof');
    const [welcome] = await take(session, 1, 'welcome');
    const echoes: string[] = [];
    for (const stream of STREAMS) {
      await session.send(stream, `hi-${stream}`);
      echoes.push(...(await take(session, 1, `echo on ${stream}`)));
    }
    await hooks.cut();
    for (const stream of STREAMS) void session.send(stream, `after-cut-${stream}`); // wait for the resume
    const afterCut = await take(session, STREAMS.length, 'echoes after the cut');

    const closed = new Promise<number>((resolve) => session.on('closed', ({ code }) => resolve(code)));
    await hooks.restart();
    const closedCode = await within(closed, 15_000, 'the session ends with the service');
    const again = await within(client.open('proof'), 15_000, 'open the restarted service');
    const reopened = await take(again, 1, 'welcome again');
    await again.send('beta', 'back');
    reopened.push(...(await take(again, 1, 'echo after the restart')));

    const impostor = await client.open('impostor').then(
      () => 'opened',
      (err: unknown) => (err instanceof KeyMismatchError ? 'KeyMismatchError' : `other: ${String(err)}`),
    );
    return {
      info: session.handshakeInfo,
      welcome: welcome!,
      echoes,
      afterCut: afterCut.sort(),
      states,
      closedCode,
      reopened,
      impostor,
    };
  } finally {
    client.close();
  }
}
