// Start a real devnet for the browser tests (node, coordinator, pool hub, exchange, one echo miner, the web app),
// on free ports in a temporary directory, or reuse one given by E2E_DEVNET=DIR. Stops what it started.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '../..');

export async function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitHttp(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

export async function startDevnet() {
  if (process.env.E2E_DEVNET) {
    const dir = process.env.E2E_DEVNET;
    const info = JSON.parse(readFileSync(join(dir, 'devnet.json'), 'utf8'));
    info.web_url ??= process.env.E2E_WEB_URL;
    return { dir, info, stop: async () => {} };
  }
  if (!existsSync(join(repo, 'web/dist/index.html'))) throw new Error('build the app first: npm run build');
  const dir = mkdtempSync(join(tmpdir(), 'aitbc-web-e2e-'));
  const ports = [];
  while (ports.length < 7) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const [rpc, ws, p2p, coordinator, poolhub, web, exchange] = ports.map(String);
  const python = process.env.PYTHON ?? join(repo, '.venv/bin/python');
  const env = { ...process.env, PYTHONPATH: [join(repo, 'src'), process.env.PYTHONPATH].filter(Boolean).join(':') };
  for (const k of Object.keys(env)) if (k.startsWith('AITBC_')) delete env[k];
  const args = ['-m', 'aitbc', 'devnet', 'up', '--data-dir', dir, '--rpc-port', rpc, '--ws-port', ws, '--p2p-port', p2p,
    '--coordinator-port', coordinator, '--poolhub-port', poolhub, '--web-port', web, '--exchange-port', exchange, '--miner-backend', 'echo', '--no-demo'];
  const proc = spawn(python, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  proc.stdout.on('data', (d) => (output += d));
  proc.stderr.on('data', (d) => (output += d));
  const deadline = Date.now() + 120_000;
  const file = join(dir, 'devnet.json');
  while (!existsSync(file)) {
    if (proc.exitCode !== null) throw new Error(`devnet up exited ${proc.exitCode}:\n${output}`);
    if (Date.now() > deadline) throw new Error(`no devnet after 120 s:\n${output}`);
    await sleep(200);
  }
  const info = JSON.parse(readFileSync(file, 'utf8'));
  if (!info.web_url) throw new Error(`the devnet did not start the web app:\n${output}`);
  const stop = async () => {
    if (proc.exitCode === null) {
      process.kill(-proc.pid, 'SIGTERM');
      const until = Date.now() + 20_000;
      while (proc.exitCode === null && Date.now() < until) await sleep(100);
      if (proc.exitCode === null) process.kill(-proc.pid, 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, info, stop, output: () => output };
}
