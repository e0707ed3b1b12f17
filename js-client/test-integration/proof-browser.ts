// proof-scenario.ts in the browser: `window.runProof(url)` runs it with the page's own WebSocket
// and origin; the hooks are `window.proofHook(name)`, which the Playwright test exposes.
import { proofScenario, type ProofResult } from './proof-scenario.js';

declare global {
  interface Window {
    runProof(url: string): Promise<ProofResult>;
    proofHook(name: string): Promise<void>;
  }
}

window.runProof = (url) =>
  proofScenario(url, 'js-chromium', { cut: () => window.proofHook('cut'), restart: () => window.proofHook('restart') });
