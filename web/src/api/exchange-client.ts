/**
 * The exchange's client (REST through openapi-fetch with the generated paths, and its WebSocket feed).
 * The session token from logging in lives in this tab only (sessionStorage) and goes only to the exchange.
 */
import createClient from 'openapi-fetch';
import type { paths } from './exchange';
import { ApiError } from './client';
import type { Delta, Snapshot } from '../lib/book';

export const MARKET = 'AITBC-BTC';

export interface Market {
  symbol: string;
  price_scale: number;
  tick_size: number;
  lot_size: number;
  maker_fee_bps: number;
  taker_fee_bps: number;
}

export interface Ticker {
  last_price: number | null;
  best_bid: number | null;
  best_ask: number | null;
  high_24h: number | null;
  low_24h: number | null;
  volume_24h: number;
  trades_24h: number;
}

export interface PublicTrade {
  trade_id: number;
  at_ms?: number;
  price: number;
  quantity: number;
  value: number;
  taker_side: string;
}

export interface Order {
  order_id: number;
  side: string;
  type: string;
  time_in_force: string;
  price: number | null;
  quantity: number;
  filled: number;
  remaining: number;
  status: string;
  reason: string | null;
  created_at_ms: number;
}

export interface Balances {
  [asset: string]: { available: number; held: number };
}

export interface BtcDeposit {
  address: string;
  uri: string;
  network: string;
  confirmations_required: number;
  qr_svg: string;
}

export interface FeedEvents {
  onSnapshot(s: Snapshot): void;
  onDelta(d: Delta): void;
  onTrade(t: PublicTrade): void;
  onTicker(t: Ticker): void;
  onStatus(s: 'connecting' | 'live' | 'closed'): void;
}

type Problem = { error?: { message?: string; reason?: string } };

async function unwrap<T>(call: Promise<{ data?: unknown; error?: unknown; response: Response }>, what: string): Promise<T> {
  let r;
  try {
    r = await call;
  } catch (e) {
    throw new ApiError(`${what}: the exchange cannot be reached (${(e as Error).message})`, 0);
  }
  if (!r.response.ok) {
    const p = (r.error ?? {}) as Problem;
    throw new ApiError(p.error?.message ?? `${what} (HTTP ${r.response.status})`, r.response.status, p.error?.reason);
  }
  return r.data as T;
}

const TOKEN_KEY = 'aitbc.exchange.session';

/** What the exchange page uses: the live exchange, or its recorded responses in mock mode. */
export type Exchange = Pick<
  ExchangeApi,
  | 'token'
  | 'market'
  | 'trades'
  | 'subscribe'
  | 'signUp'
  | 'logIn'
  | 'logOut'
  | 'me'
  | 'balances'
  | 'orders'
  | 'placeOrder'
  | 'cancelOrder'
  | 'depositBtc'
  | 'depositQr'
> & { readonly kind: 'live' | 'mock' };

export class ExchangeApi {
  readonly kind = 'live' as const;
  private readonly client;
  token: string | null = sessionStorage.getItem(TOKEN_KEY);

  constructor(readonly baseUrl: string) {
    this.client = createClient<paths>({ baseUrl: baseUrl.replace(/\/$/, '') });
  }

  private get auth() {
    return { Authorization: `Bearer ${this.token ?? ''}` };
  }

  async market(): Promise<Market> {
    const r = await unwrap<{ markets: Market[] }>(this.client.GET('/api/v1/markets'), 'markets');
    return r.markets[0]!;
  }

  book(depth = 20) {
    return unwrap<Snapshot>(this.client.GET('/api/v1/markets/{symbol}/book', { params: { path: { symbol: MARKET }, query: { depth } } }), 'book');
  }

  async trades(limit = 30) {
    const r = await unwrap<{ trades: PublicTrade[] }>(
      this.client.GET('/api/v1/markets/{symbol}/trades', { params: { path: { symbol: MARKET }, query: { limit } } }),
      'trades',
    );
    return r.trades;
  }

  ticker() {
    return unwrap<Ticker>(this.client.GET('/api/v1/markets/{symbol}/ticker', { params: { path: { symbol: MARKET } } }), 'ticker');
  }

  async signUp(username: string, password: string) {
    await unwrap(this.client.POST('/api/v1/users', { body: { username, password } }), 'sign up');
  }

  async logIn(username: string, password: string, totp?: string) {
    const r = await unwrap<{ token: string }>(
      this.client.POST('/api/v1/sessions', { body: { username, password, ...(totp ? { totp } : {}) } as never }),
      'log in',
    );
    this.token = r.token;
    sessionStorage.setItem(TOKEN_KEY, r.token);
  }

  async logOut() {
    try {
      await unwrap(this.client.DELETE('/api/v1/sessions/{session_id}', { params: { path: { session_id: 'current' } }, headers: this.auth }), 'log out');
    } finally {
      this.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
    }
  }

  me() {
    return unwrap<{ username: string; totp_enabled?: boolean }>(this.client.GET('/api/v1/users/me', { headers: this.auth }), 'account');
  }

  async balances() {
    return (await unwrap<{ balances: Balances }>(this.client.GET('/api/v1/balances', { headers: this.auth }), 'balances')).balances;
  }

  async orders(status: 'open' | 'all' = 'open') {
    const r = await unwrap<{ orders: Order[] }>(this.client.GET('/api/v1/orders', { params: { query: { status } }, headers: this.auth }), 'orders');
    return r.orders;
  }

  placeOrder(order: { side: 'buy' | 'sell'; type: 'limit' | 'market'; quantity: number; price?: number; post_only?: boolean }) {
    return unwrap<Order>(this.client.POST('/api/v1/orders', { body: { market: MARKET, ...order } as never, headers: this.auth }), 'place order');
  }

  cancelOrder(id: number) {
    return unwrap<{ order_id: number; status: string }>(
      this.client.DELETE('/api/v1/orders/{order_id}', { params: { path: { order_id: id } }, headers: this.auth }),
      'cancel order',
    );
  }

  depositBtc(amount?: number) {
    return unwrap<BtcDeposit>(
      this.client.POST('/api/v1/deposits', { body: { asset: 'BTC', ...(amount ? { amount } : {}) } as never, headers: this.auth }),
      'BTC deposit address',
    );
  }

  /** The BIP21 QR code as a data: URL (the request needs the session header, so no plain <img src>). */
  async depositQr(path: string): Promise<string> {
    const r = await fetch(this.baseUrl.replace(/\/$/, '') + path, { headers: this.auth });
    if (!r.ok) throw new ApiError('QR code', r.status);
    const svg = await r.text();
    return 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(svg)));
  }

  subscribe(events: FeedEvents): { resync: () => void; close: () => void } {
    let socket: WebSocket | null = null;
    let closed = false;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const url = this.baseUrl.replace(/^http/, 'ws').replace(/\/$/, '') + '/api/v1/ws';
    const connect = () => {
      if (closed) return;
      events.onStatus('connecting');
      socket = new WebSocket(url);
      socket.onopen = () => {
        socket?.send(JSON.stringify({ op: 'subscribe', channels: ['book', 'trades', 'ticker'] }));
        events.onStatus('live');
      };
      socket.onmessage = async (m) => {
        const text = typeof m.data === 'string' ? m.data : await (m.data as Blob).text();
        const msg = JSON.parse(text) as { type?: string } & Record<string, unknown>;
        if (msg.type === 'book_snapshot') events.onSnapshot(msg as unknown as Snapshot);
        else if (msg.type === 'book_delta') events.onDelta(msg as unknown as Delta);
        else if (msg.type === 'trade') events.onTrade(msg as unknown as PublicTrade);
        else if (msg.type === 'ticker') events.onTicker(msg as unknown as Ticker);
      };
      socket.onclose = () => {
        events.onStatus('closed');
        if (!closed) retry = setTimeout(connect, 2000);
      };
    };
    connect();
    return {
      resync: () => socket?.send(JSON.stringify({ op: 'snapshot' })),
      close: () => {
        closed = true;
        clearTimeout(retry);
        socket?.close();
      },
    };
  }
}
