// The `ws` package has no bundled types; the integration scripts only hand its class to the client.
declare module 'ws' {
  export const WebSocket: unknown;
}
