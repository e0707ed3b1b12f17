// proof-scenario.ts in Node (the `ws` package). Environment: GLUEBERRY_GATEWAY_URL, GLUEBERRY_ORIGIN.
// The hooks are asked on stdout (`HOOK cut`, `HOOK restart`) and answered with a line on stdin;
// the last line printed is `RESULT <json>`.
import { createInterface } from 'node:readline';
import { WebSocket } from 'ws';
import type { WebSocketConstructor } from '../src/index.js';
import { proofScenario } from './proof-scenario.js';

const url = process.env.GLUEBERRY_GATEWAY_URL;
const origin = process.env.GLUEBERRY_ORIGIN;
if (!url || !origin) throw new Error('set GLUEBERRY_GATEWAY_URL and GLUEBERRY_ORIGIN');

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const hook = async (name: string): Promise<void> => {
  console.log(`HOOK ${name}`);
  await lines.next();
};

const result = await proofScenario(url, 'js-node', { cut: () => hook('cut'), restart: () => hook('restart') }, {
  origin,
  WebSocket: WebSocket as WebSocketConstructor,
});
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
