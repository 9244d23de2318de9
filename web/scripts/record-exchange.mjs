// Record the exchange part of the mock data: real responses of an exchange with a market maker and a
// trade on its book (tests/support/web_exchange.py), saved into fixtures/exchange.json.
//   node scripts/record-exchange.mjs
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { startExchange } from '../e2e/exchange.mjs';

const ex = await startExchange();
try {
  const base = ex.info.url;
  const get = async (path) => (await fetch(base + path)).json();
  // one trade: a second user takes part of the maker's ask
  const user = { username: 'recorder', password: 'recorder password 1' };
  await fetch(base + '/api/v1/users', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(user) });
  const session = await (await fetch(base + '/api/v1/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(user) })).json();
  const auth = { Authorization: `Bearer ${session.token}`, 'Content-Type': 'application/json' };
  const address = (await (await fetch(base + '/api/v1/deposits', { method: 'POST', headers: auth, body: JSON.stringify({ asset: 'BTC' }) })).json()).address;
  await ex.pay(address, 5_000_000);
  for (let i = 0; i < 50; i++) {
    const balances = (await (await fetch(base + '/api/v1/balances', { headers: auth })).json()).balances;
    if (balances.BTC?.available) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await fetch(base + '/api/v1/orders', { method: 'POST', headers: auth, body: JSON.stringify({ side: 'buy', type: 'market', quantity: 3_000_000 }) });
  const out = {
    recorded_at: new Date().toISOString(),
    source: 'aitbc exchange (real responses; a market maker and one trade, tests/support/web_exchange.py)',
    markets: await get('/api/v1/markets'),
    book: await get('/api/v1/markets/AITBC-BTC/book?depth=20'),
    trades: await get('/api/v1/markets/AITBC-BTC/trades?limit=30'),
    ticker: await get('/api/v1/markets/AITBC-BTC/ticker'),
  };
  const path = resolve(import.meta.dirname, '../fixtures/exchange.json');
  writeFileSync(path, JSON.stringify(out, null, 2) + '\n');
  console.log(`recorded ${path}`);
} finally {
  await ex.stop();
}
