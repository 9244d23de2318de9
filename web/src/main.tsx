import { render } from 'preact';
import { App } from './app';
import type { Config } from './api/types';
import './styles.css';

const EMPTY: Config = {
  coordinator_url: null,
  node_url: null,
  ws_url: null,
  poolhub_url: null,
  exchange_url: null,
  chain_id: null,
};

/** The server tells the app where the services are (`aitbc web serve` → /config.json). */
async function loadConfig(): Promise<Config> {
  try {
    const r = await fetch('/config.json', { cache: 'no-store' });
    return r.ok ? { ...EMPTY, ...((await r.json()) as Partial<Config>) } : EMPTY;
  } catch {
    return EMPTY;
  }
}

const root = document.getElementById('app')!;
const config = await loadConfig();
root.textContent = ''; // drop the loading line
render(<App config={config} />, root);
