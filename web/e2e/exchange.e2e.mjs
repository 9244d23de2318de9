// The exchange page in a real browser against a real exchange (aitbc.exchange on a regtest Bitcoin double):
// sign up, a BTC deposit address with its BIP21 QR code, a real deposit credited, then place an order
// (it rests on the live book) and cancel it (it leaves the book), and a market order that trades.
import AxeBuilder from '@axe-core/playwright';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startExchange } from './exchange.mjs';

const shots = resolve(import.meta.dirname, '../artifacts/screenshots');
mkdirSync(shots, { recursive: true });
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let exchange;
let browser;
let page;
const consoleErrors = [];

describe('exchange page against a real exchange', { timeout: 180_000 }, () => {
  before(async () => {
    exchange = await startExchange();
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
  });

  after(async () => {
    await browser?.close();
    await exchange?.stop();
  });

  test('the book and ticker arrive over the feed', async () => {
    await page.goto(`${exchange.webUrl}/#/exchange`);
    const book = page.getByTestId('book');
    await book.getByRole('cell', { name: '2,000', exact: true }).waitFor({ timeout: 15_000 });
    await book.getByRole('cell', { name: '1,000', exact: true }).waitFor();
    await page.getByText('live').first().waitFor();
  });

  test('sign up, deposit BTC to the BIP21 address, and see it credited', async () => {
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel(/^Password/).fill('alice password 1');
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByTestId('balances').waitFor();
    await page.getByRole('button', { name: 'Show my BTC deposit address' }).click();
    const deposit = page.getByTestId('deposit');
    await deposit.getByRole('img').waitFor();
    const uri = await deposit.getByRole('link').innerText();
    assert.match(uri, /^bitcoin:bcrt1q[0-9a-z]+$/);
    const address = uri.slice('bitcoin:'.length);
    assert.ok((await deposit.getByRole('img').getAttribute('src')).startsWith('data:image/svg+xml;base64,'));
    assert.match(await exchange.pay(address, 1_000_000), /^paid [0-9a-f]{64}$/);
    await page.getByTestId('balances').getByText('0.01000000 BTC available').waitFor({ timeout: 30_000 });
    await page.screenshot({ path: join(shots, 'exchange-deposit.png'), fullPage: true });
  });

  test('place a limit order: it rests on the book; cancel it: it leaves', async () => {
    await page.getByLabel('Side').selectOption('buy');
    await page.getByLabel('Quantity (AITBC)').fill('1');
    await page.getByLabel('Price (sat per AITBC)').fill('1500');
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.getByTestId('order-result').getByText(/: (open|rested|new)/).waitFor();
    const book = page.getByTestId('book');
    await book.getByRole('cell', { name: '1,500', exact: true }).waitFor({ timeout: 10_000 });
    const cancel = page.getByRole('button', { name: /^Cancel order \d+$/ });
    await cancel.waitFor({ timeout: 10_000 });
    await page.screenshot({ path: join(shots, 'exchange-order.png'), fullPage: true });
    const result = await new AxeBuilder({ page }).analyze();
    const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(serious.map((v) => `${v.id}: ${v.help}`), [], 'serious accessibility violations on the exchange');
    await cancel.click();
    await book.getByRole('cell', { name: '1,500', exact: true }).waitFor({ state: 'detached', timeout: 10_000 });
    await page.getByText('No open order.').waitFor({ timeout: 10_000 });
  });

  test('a market buy takes the ask and shows up in the trades', async () => {
    await page.getByLabel('Type').selectOption('market');
    await page.getByLabel('Quantity (AITBC)').fill('2');
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.getByTestId('order-result').getByText(/filled 2 AITBC/).waitFor({ timeout: 10_000 });
    await page.getByRole('region', { name: 'Latest trades' }).getByRole('cell', { name: '2,000', exact: true }).first().waitFor({ timeout: 10_000 });
    // the taker fee (10 bps) is paid in what the buyer receives: 2 AITBC - 0.002
    await page.getByTestId('balances').getByText(/^1\.998 AITBC/).waitFor({ timeout: 10_000 });
    await page.screenshot({ path: join(shots, 'exchange.png'), fullPage: true });
  });

  test('no errors in the browser console', () => {
    assert.deepEqual(consoleErrors, []);
  });
});
