/**
 * A thin wrapper over one WebSocket (the browser's, or Node's `ws` package injected by the
 * caller): subprotocol `glueberry.v1`, binary messages as `Uint8Array`, and four callbacks.
 * After {@link Transport.close} (or once the socket closed) no callback runs again.
 */

import { CloseCode } from './codes.js';
import { SUBPROTOCOL } from './codec.js';

/**
 * A WebSocket class: `globalThis.WebSocket` in browsers, or the `ws` package in Node (which
 * receives `{ origin, perMessageDeflate: false }` as its third argument when an origin is given,
 * so the Origin header is the one signed and no compression is offered: payloads are ciphertext).
 */
export type WebSocketConstructor = new (url: string, protocols: string[], ...rest: never[]) => unknown;

/** The part of the WebSocket API used here (browser and `ws` alike). */
interface Socket {
  binaryType: string;
  readonly protocol: string;
  readonly bufferedAmount: number;
  onopen: (() => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: (() => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}
type SocketOptions = { origin: string; perMessageDeflate: false };
type SocketConstructor = new (url: string, protocols: string[], options?: SocketOptions) => Socket;

export interface TransportHandlers {
  open(): void;
  text(data: string): void;
  binary(data: Uint8Array): void;
  /** The socket closed or could not be opened (1006 when there was no close frame). */
  close(code: number, reason: string): void;
}

export class Transport {
  readonly #ws: Socket;
  readonly #on: TransportHandlers;
  #done = false;

  constructor(url: string, WebSocket: WebSocketConstructor, origin: string | undefined, on: TransportHandlers) {
    const Ctor = WebSocket as unknown as SocketConstructor;
    this.#on = on;
    const ws =
      origin === undefined
        ? new Ctor(url, [SUBPROTOCOL])
        : new Ctor(url, [SUBPROTOCOL], { origin, perMessageDeflate: false });
    this.#ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      if (ws.protocol === SUBPROTOCOL) on.open();
      else this.#fail(CloseCode.UnsupportedVersion, `the gateway did not accept ${SUBPROTOCOL}`);
    };
    ws.onmessage = ({ data }) => {
      if (this.#done) return;
      if (typeof data === 'string') on.text(data);
      else if (data instanceof ArrayBuffer) on.binary(new Uint8Array(data));
      else if (ArrayBuffer.isView(data)) on.binary(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    };
    ws.onclose = ({ code, reason }) => this.#fail(code || 1006, reason || '');
    ws.onerror = () => undefined; // a close event follows
  }

  /** Bytes queued and not yet sent. */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(data: string | Uint8Array): void {
    if (this.#done) return;
    try {
      this.#ws.send(data);
    } catch {
      this.#fail(1006, 'send failed');
    }
  }

  /** Close on purpose; the `close` handler is not called for it. */
  close(code: number, reason = ''): void {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#ws.close(code, reason.slice(0, 120));
    } catch {
      // already closing
    }
  }

  #fail(code: number, reason: string): void {
    if (this.#done) return;
    this.close(code >= 3000 ? code : 1000, reason);
    this.#on.close(code, reason);
  }
}
