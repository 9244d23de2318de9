// For the exchange page's browser test: a real exchange (tests/support/web_exchange.py: aitbc.exchange on a
// regtest Bitcoin double, with a market maker) and `aitbc web serve` pointed at it, on free ports.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join, resolve } from 'node:path';
import { freePort, waitHttp } from './devnet.mjs';

const repo = resolve(import.meta.dirname, '../..');

export async function startExchange() {
  const [exchangePort, webPort] = [await freePort(), await freePort()];
  const python = process.env.PYTHON ?? join(repo, '.venv/bin/python');
  const env = { ...process.env, PYTHONPATH: [join(repo, 'src'), join(repo, 'tests'), process.env.PYTHONPATH].filter(Boolean).join(':') };
  for (const k of Object.keys(env)) if (k.startsWith('AITBC_')) delete env[k];
  const webUrl = `http://127.0.0.1:${webPort}`;
  const harness = spawn(python, ['-m', 'support.web_exchange', '--port', String(exchangePort), '--origin', webUrl], {
    env,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: harness.stdout });
  const waiting = [];
  let ready;
  const readyLine = new Promise((ok, fail) => {
    ready = ok;
    harness.on('exit', (code) => fail(new Error(`the exchange harness exited with ${code}`)));
  });
  lines.on('line', (line) => {
    if (line.startsWith('{')) ready(JSON.parse(line));
    else waiting.shift()?.(line);
  });
  const info = await readyLine;
  const web = spawn(
    python,
    ['-m', 'aitbc', 'web', 'serve', '--port', String(webPort), '--exchange-url', info.url],
    { env, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  await waitHttp(`${webUrl}/healthz`, 30_000);
  return {
    webUrl,
    info,
    /** Pay `sats` to `address` in a new regtest block (a real deposit the exchange's watcher credits). */
    pay: (address, sats) =>
      new Promise((ok) => {
        waiting.push(ok);
        harness.stdin.write(`pay ${address} ${sats}\n`);
      }),
    stop: async () => {
      web.kill('SIGTERM');
      harness.stdin.end();
      await new Promise((r) => (harness.exitCode !== null ? r() : harness.on('exit', r)));
    },
  };
}
