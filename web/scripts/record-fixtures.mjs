// Record the mock mode's data from a running devnet: real responses of the coordinator, the node
// and the pool hub, saved verbatim into fixtures/devnet.json (the app labels them as recorded).
//   node scripts/record-fixtures.mjs /path/to/devnet   (a devnet with at least one completed job)
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const dir = process.argv[2] ?? join(process.env.HOME, '.aitbc/devnet');
const info = JSON.parse(readFileSync(join(dir, 'devnet.json'), 'utf8'));
const C = info.coordinator_url.replace(/\/$/, '');
const N = info.rpc_url.replace(/\/$/, '');
const P = info.poolhub_url?.replace(/\/$/, '');
const auth = { 'X-Api-Key': info.api_key };

async function rpc(method, params) {
  const r = await fetch(N + '/', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', method, params, id: 1 }),
  });
  return (await r.json()).result ?? null;
}

async function get(url, headers = {}) {
  const r = await fetch(url, { headers });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (r.headers.get('content-type') ?? '').includes('json') ? r.json() : r.text();
}

const jobs = (await get(`${C}/api/v1/jobs?limit=20`, auth)).jobs;
const done = jobs.find((j) => j.state === 'completed' && j.type === 'inference' && j.payment?.state === 'settled');
if (!done) throw new Error('no completed, settled inference job on this devnet yet');
const id = done.job_id;
const head = await get(`${N}/v1/head`);
const heights = Array.from({ length: Math.min(head.height, 20) }, (_, i) => head.height - i);
const out = {
  recorded_at: new Date().toISOString(),
  source: 'aitbc devnet (real responses of the coordinator, node and pool hub)',
  job_id: id,
  coordinator: {
    health: await get(`${C}/healthz`),
    models: await get(`${C}/api/v1/models`),
    jobs: { jobs },
    job: await get(`${C}/api/v1/jobs/${id}`, auth),
    result: await get(`${C}/api/v1/jobs/${id}/result`, auth),
    receipt: await get(`${C}/api/v1/jobs/${id}/receipt`, auth),
    match: await get(`${C}/api/v1/jobs/${id}/match`, auth),
    events: await get(`${C}/api/v1/jobs/${id}/events`, auth),
    metrics: await get(`${C}/metrics`),
    account: await get(`${C}/api/v1/account`, auth).catch(() => null),
  },
  node: {
    head,
    chain: await get(`${N}/v1/chain`),
    blocks: await Promise.all(heights.map((h) => get(`${N}/v1/blocks/${h}`))),
    settle_block: await get(`${N}/v1/blocks/${done.payment.height}`),
    account: await get(`${N}/v1/accounts/${done.client}`),
    job: await rpc('get_job', [id]),
    paid_job: (await rpc('get_paid_job', [id]))?.paid ?? null,
    deposit: null,
    validators: await rpc('get_validators', []),
  },
  poolhub: P
    ? {
        miners: await get(`${P}/v1/miners`),
        leaderboard: await get(`${P}/v1/leaderboard`),
        miner: await get(`${P}/v1/miners/${done.miner}`),
      }
    : null,
};
if (out.coordinator.account) out.node.deposit = (await rpc('get_deposit', [out.coordinator.account.deposit_id]))?.deposit ?? null;
const path = resolve(import.meta.dirname, '../fixtures/devnet.json');
writeFileSync(path, JSON.stringify(out, null, 2) + '\n');
console.log(`recorded ${path} (job ${id}, head ${head.height})`);
