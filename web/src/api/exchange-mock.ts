/**
 * The exchange in mock mode: the market data recorded from a real exchange (fixtures/exchange.json,
 * `node scripts/record-exchange.mjs`); trading is off (nothing reaches a service).
 */
import { ApiError } from './client';
import type { Exchange, FeedEvents, Market, PublicTrade, Ticker } from './exchange-client';
import type { Snapshot } from '../lib/book';

export interface ExchangeFixture {
  recorded_at: string;
  source: string;
  markets: { markets: Market[] };
  book: Snapshot;
  trades: { trades: PublicTrade[] };
  ticker: Ticker;
}

export async function loadExchangeFixture(): Promise<ExchangeFixture> {
  return (await import('../../fixtures/exchange.json')).default as unknown as ExchangeFixture;
}

const off = async (): Promise<never> => {
  throw new ApiError('trading is off in mock mode: these are recorded market data, nothing reaches an exchange', 0);
};

export class MockExchange implements Exchange {
  readonly kind = 'mock' as const;
  token: string | null = null;

  constructor(private readonly f: ExchangeFixture) {}

  async market() {
    return structuredClone(this.f.markets.markets[0]!);
  }
  async trades() {
    return structuredClone(this.f.trades.trades);
  }
  subscribe(events: FeedEvents) {
    const timer = setTimeout(() => {
      events.onStatus('live');
      events.onSnapshot(structuredClone(this.f.book));
      events.onTicker(structuredClone(this.f.ticker));
    }, 0);
    return { resync: () => undefined, close: () => clearTimeout(timer) };
  }
  signUp = off;
  logIn = off;
  logOut = off;
  me = off;
  balances = off;
  orders = off;
  placeOrder = off;
  cancelOrder = off;
  depositBtc = off;
  depositQr = off;
}
