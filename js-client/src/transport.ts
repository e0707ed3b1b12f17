/**
 * The WebSocket (the browser's, or Node's `ws` package injected by the caller) as connection.ts
 * uses it: {@link openSocket} with the subprotocol `glueberry.v1` and binary messages as
 * ArrayBuffers, {@link messageData} for what a message event carries, {@link closeSocket}.
 */

import { SUBPROTOCOL } from './codec.js';

/**
 * A WebSocket class: `globalThis.WebSocket` in browsers, or the `ws` package in Node (which
 * receives `{ origin, perMessageDeflate: false }` as its third argument when an origin is given,
 * so the Origin header is the one signed and no compression is offered: payloads are ciphertext).
 */
export type WebSocketConstructor = new (url: string, protocols: string[], ...rest: never[]) => unknown;

/** The part of the WebSocket API used here (browser and `ws` alike). */
export interface Socket {
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

/**
 * Defined (as `true`) only when building the single-file browser bundle (scripts/browser-bundle.mjs):
 * `typeof GLUEBERRY_BROWSER_BUNDLE === 'undefined'` marks code for Node (the `ws` package), which
 * the bundle then leaves out. Everywhere else the name is undeclared, so the test is true.
 */
declare const GLUEBERRY_BROWSER_BUNDLE: true;

/** A new socket to `url` offering `glueberry.v1` (with `origin` for `ws` in Node); may throw. */
export function openSocket(url: string, WebSocket: WebSocketConstructor, origin: string | undefined): Socket {
  const Ctor = WebSocket as unknown as SocketConstructor;
  const ws =
    typeof GLUEBERRY_BROWSER_BUNDLE === 'undefined' && origin !== undefined
      ? new Ctor(url, [SUBPROTOCOL], { origin, perMessageDeflate: false })
      : new Ctor(url, [SUBPROTOCOL]);
  ws.binaryType = 'arraybuffer';
  ws.onerror = () => undefined; // a close event follows
  return ws;
}

/** A message's data: a string (text frame) or the bytes (binary frame), else undefined. */
export function messageData(data: unknown): string | Uint8Array | undefined {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (typeof GLUEBERRY_BROWSER_BUNDLE === 'undefined' && ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength); // Node's Buffer
  }
  return undefined;
}

/** Close `ws` if it is still there (1000 stands in for codes a client cannot send, e.g. 1006). */
export function closeSocket(ws: Socket | undefined, code: number, reason: string): void {
  try {
    ws?.close(code >= 3000 ? code : 1000, reason.slice(0, 120));
  } catch {
    // already closing
  }
}
