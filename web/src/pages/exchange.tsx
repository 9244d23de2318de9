/** Exchange: the AITBC-BTC order book and trades live over the feed; log in, balances, place and cancel orders, BTC deposits. */
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from '../api/client';
import { type BtcDeposit, type Exchange, ExchangeApi, type Market, type PublicTrade, type Ticker } from '../api/exchange-client';
import { Amount, Badge, ErrorBox, Loading, Page, Section, Table, useAsync } from '../components/ui';
import { type Book, applyDelta, bookFromSnapshot, formatBtc, levels } from '../lib/book';
import { formatAitbc, parseAitbc, timeAgo } from '../lib/format';
import { useApi } from '../state';

function useFeed(ex: Exchange) {
  const [book, setBook] = useState<Book | null>(null);
  const [trades, setTrades] = useState<PublicTrade[]>([]);
  const [ticker, setTicker] = useState<Ticker | null>(null);
  const [status, setStatus] = useState('connecting');
  useEffect(() => {
    let live = true;
    void ex.trades().then((t) => live && setTrades(t), () => undefined);
    const feed = ex.subscribe({
      onSnapshot: (s) => live && setBook(bookFromSnapshot(s)),
      onDelta: (d) =>
        live &&
        setBook((b) => {
          if (!b) return b;
          const next = applyDelta(b, d);
          if (next.gap) feed.resync();
          return next.book;
        }),
      onTrade: (t) => live && setTrades((ts) => [t, ...ts].slice(0, 30)),
      onTicker: (t) => live && setTicker(t),
      onStatus: (s) => live && setStatus(s),
    });
    return () => {
      live = false;
      feed.close();
    };
  }, [ex]);
  return { book, trades, ticker, status };
}

function BookTable({ book, side }: { book: Book; side: 'buy' | 'sell' }) {
  const rows = levels(book, side, 15);
  const caption = side === 'buy' ? 'Bids' : 'Asks';
  return (
    <Table caption={caption} head={[`${caption}: price (sat/AITBC)`, 'Quantity (AITBC)']}>
      {rows.map(([price, quantity]) => (
        <tr key={price} class={side === 'buy' ? 'bid' : 'ask'}>
          <td>{price.toLocaleString()}</td>
          <td>{formatAitbc(quantity)}</td>
        </tr>
      ))}
      {rows.length === 0 && (
        <tr>
          <td colSpan={2} class="muted">
            no {side === 'buy' ? 'bids' : 'asks'}
          </td>
        </tr>
      )}
    </Table>
  );
}

function MarketData({ ex }: { ex: Exchange }) {
  const { book, trades, ticker, status } = useFeed(ex);
  return (
    <>
      <Section
        title="AITBC-BTC"
        actions={
          <span>
            <Badge state={status} /> feed
          </span>
        }
      >
        <dl class="facts" data-testid="ticker">
          <dt>Last</dt>
          <dd>{ticker?.last_price?.toLocaleString() ?? '—'} sat</dd>
          <dt>Best bid / ask</dt>
          <dd>
            {ticker?.best_bid?.toLocaleString() ?? '—'} / {ticker?.best_ask?.toLocaleString() ?? '—'} sat
          </dd>
          <dt>24 h volume</dt>
          <dd>
            {ticker ? formatAitbc(ticker.volume_24h) : '—'} AITBC in {ticker?.trades_24h ?? 0} trades
          </dd>
        </dl>
      </Section>
      <div class="grid">
        <Section title="Order book">
          {book ? (
            <div class="book" data-testid="book">
              <BookTable book={book} side="sell" />
              <BookTable book={book} side="buy" />
            </div>
          ) : (
            <Loading what="the order book" />
          )}
        </Section>
        <Section title="Trades">
          <Table caption="Latest trades" head={['Price (sat)', 'AITBC', 'Taker', 'When']}>
            {trades.map((t) => (
              <tr key={t.trade_id}>
                <td>{t.price.toLocaleString()}</td>
                <td>{formatAitbc(t.quantity)}</td>
                <td>{t.taker_side}</td>
                <td>{t.at_ms ? timeAgo(t.at_ms) : 'now'}</td>
              </tr>
            ))}
          </Table>
          {trades.length === 0 && <p class="muted">No trades yet.</p>}
        </Section>
      </div>
    </>
  );
}

function Login({ ex, onDone }: { ex: Exchange; onDone: () => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [totp, setTotp] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const act = async (signUp: boolean) => {
    setBusy(true);
    setError(undefined);
    try {
      if (signUp) await ex.signUp(username, password);
      await ex.logIn(username, password, totp || undefined);
      onDone();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="form" onSubmit={(e) => (e.preventDefault(), void act(false))}>
      <label>
        Username
        <input value={username} required autoComplete="username" onInput={(e) => setUsername((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Password (at least 10 characters)
        <input type="password" value={password} required autoComplete="current-password" onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        2FA code (if enabled)
        <input value={totp} inputMode="numeric" autoComplete="one-time-code" maxLength={8} onInput={(e) => setTotp((e.target as HTMLInputElement).value)} />
      </label>
      <div class="row">
        <button type="submit" disabled={busy}>
          Log in
        </button>
        <button type="button" class="secondary" disabled={busy} onClick={() => void act(true)}>
          Sign up
        </button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}

function OrderForm({ ex, market, onPlaced }: { ex: Exchange; market: Market; onPlaced: () => void }) {
  const [side, setSide] = useState<'buy' | 'sell'>('buy');
  const [type, setType] = useState<'limit' | 'market'>('limit');
  const [quantity, setQuantity] = useState('1');
  const [price, setPrice] = useState('');
  const [postOnly, setPostOnly] = useState(false);
  const [result, setResult] = useState<string>();
  const [error, setError] = useState<string>();
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setResult(undefined);
    try {
      const qty = Number(parseAitbc(quantity));
      if (qty % market.lot_size !== 0) throw new Error(`the quantity must be a multiple of ${formatAitbc(market.lot_size)} AITBC`);
      const order = await ex.placeOrder({
        side,
        type,
        quantity: qty,
        ...(type === 'limit' ? { price: Number(price), post_only: postOnly } : {}),
      });
      setResult(`order ${order.order_id}: ${order.status}, filled ${formatAitbc(order.filled)} AITBC`);
      onPlaced();
    } catch (err) {
      setError(err instanceof ApiError && err.reason ? `${err.message} (${err.reason})` : (err as Error).message);
    }
  };
  return (
    <form class="form" onSubmit={submit} aria-label="Place an order">
      <div class="row">
        <label>
          Side
          <select value={side} onChange={(e) => setSide((e.target as HTMLSelectElement).value as 'buy' | 'sell')}>
            <option value="buy">Buy AITBC</option>
            <option value="sell">Sell AITBC</option>
          </select>
        </label>
        <label>
          Type
          <select value={type} onChange={(e) => setType((e.target as HTMLSelectElement).value as 'limit' | 'market')}>
            <option value="limit">Limit</option>
            <option value="market">Market</option>
          </select>
        </label>
        <label>
          Quantity (AITBC)
          <input value={quantity} required inputMode="decimal" onInput={(e) => setQuantity((e.target as HTMLInputElement).value)} />
        </label>
        {type === 'limit' && (
          <label>
            Price (sat per AITBC)
            <input value={price} required inputMode="numeric" pattern="[0-9]+" onInput={(e) => setPrice((e.target as HTMLInputElement).value)} />
          </label>
        )}
      </div>
      {type === 'limit' && (
        <label class="inline">
          <input type="checkbox" checked={postOnly} onChange={(e) => setPostOnly((e.target as HTMLInputElement).checked)} /> post only (never take)
        </label>
      )}
      <p class="muted small">
        Lot {formatAitbc(market.lot_size)} AITBC, tick {market.tick_size} sat; fees: maker {market.maker_fee_bps / 100} %, taker{' '}
        {market.taker_fee_bps / 100} %.
      </p>
      <button type="submit">Place order</button>
      {result && (
        <p role="status" data-testid="order-result">
          {result}
        </p>
      )}
      <ErrorBox error={error} />
    </form>
  );
}

function Deposit({ ex }: { ex: Exchange }) {
  const [deposit, setDeposit] = useState<BtcDeposit & { qr: string }>();
  const [error, setError] = useState<string>();
  const ask = async () => {
    setError(undefined);
    try {
      const d = await ex.depositBtc();
      setDeposit({ ...d, qr: await ex.depositQr(d.qr_svg) });
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <div>
      <button type="button" class="secondary" onClick={() => void ask()}>
        Show my BTC deposit address
      </button>
      {deposit && (
        <div class="deposit" data-testid="deposit">
          <img src={deposit.qr} width={180} height={180} alt={`QR code of ${deposit.uri}`} />
          <dl class="facts">
            <dt>Network</dt>
            <dd>{deposit.network}</dd>
            <dt>Address</dt>
            <dd class="mono wrap">{deposit.address}</dd>
            <dt>BIP21</dt>
            <dd class="mono wrap">
              <a href={deposit.uri}>{deposit.uri}</a>
            </dd>
            <dt>Credited after</dt>
            <dd>{deposit.confirmations_required} confirmations</dd>
          </dl>
        </div>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

function Trading({ ex, onLogout }: { ex: Exchange; onLogout: () => void }) {
  const market = useAsync(() => ex.market(), [ex]);
  const [tick, setTick] = useState(0);
  const balances = useAsync(() => ex.balances(), [ex, tick], 3000);
  const orders = useAsync(() => ex.orders('open'), [ex, tick], 3000);
  const me = useAsync(() => ex.me(), [ex]);
  const [error, setError] = useState<string>();
  const refresh = () => setTick((t) => t + 1);
  const cancel = async (id: number) => {
    setError(undefined);
    try {
      await ex.cancelOrder(id);
      refresh();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <>
      <Section
        title="My account"
        actions={
          <button type="button" class="secondary" onClick={() => void ex.logOut().finally(onLogout)}>
            Log out {me.data?.username}
          </button>
        }
      >
        <ErrorBox error={balances.error} />
        {balances.data && (
          <dl class="facts" data-testid="balances">
            <dt>AITBC</dt>
            <dd>
              <Amount value={balances.data.AITBC?.available ?? 0} /> available, <Amount value={balances.data.AITBC?.held ?? 0} unit={false} /> held
            </dd>
            <dt>BTC</dt>
            <dd>
              {formatBtc(balances.data.BTC?.available ?? 0)} BTC available, {formatBtc(balances.data.BTC?.held ?? 0)} held
            </dd>
          </dl>
        )}
        <h3>Deposit</h3>
        <Deposit ex={ex} />
      </Section>
      <Section title="Place an order">{market.data ? <OrderForm ex={ex} market={market.data} onPlaced={refresh} /> : <Loading what="the market" />}</Section>
      <Section title="My open orders">
        <ErrorBox error={error ?? orders.error} />
        {orders.data && orders.data.length === 0 && <p class="muted">No open order.</p>}
        {orders.data && orders.data.length > 0 && (
          <Table caption="My open orders" head={['Order', 'Side', 'Price (sat)', 'Quantity', 'Filled', 'Status', '']}>
            {orders.data.map((o) => (
              <tr key={o.order_id} data-testid={`order-${o.order_id}`}>
                <td>{o.order_id}</td>
                <td>{o.side}</td>
                <td>{o.price?.toLocaleString() ?? 'market'}</td>
                <td>{formatAitbc(o.quantity)}</td>
                <td>{formatAitbc(o.filled)}</td>
                <td>
                  <Badge state={o.status} />
                </td>
                <td>
                  <button type="button" class="secondary" onClick={() => void cancel(o.order_id)} aria-label={`Cancel order ${o.order_id}`}>
                    Cancel
                  </button>
                </td>
              </tr>
            ))}
          </Table>
        )}
      </Section>
    </>
  );
}

export function ExchangePage() {
  const api = useApi();
  const url = api.config.exchange_url;
  const ex = useAsync<Exchange | null>(async () => {
    if (api.kind === 'mock') {
      const { MockExchange, loadExchangeFixture } = await import('../api/exchange-mock');
      return new MockExchange(await loadExchangeFixture());
    }
    return url ? new ExchangeApi(url) : null;
  }, [url, api.kind]);
  const [loggedIn, setLoggedIn] = useState<boolean | null>(null);
  if (ex.data === undefined) return <Loading what="the exchange" />;
  if (ex.data === null) {
    return (
      <Page title="Exchange">
        <p class="muted">No exchange is configured: start one (`aitbc exchange run`) and serve the app with --exchange-url.</p>
      </Page>
    );
  }
  const exchange = ex.data;
  const inSession = loggedIn ?? Boolean(exchange.token);
  return (
    <Page title="Exchange" intro="Trade AITBC for BTC. Prices are satoshis per AITBC; the book and trades update live.">
      <MarketData ex={exchange} />
      {exchange.kind === 'mock' ? (
        <Section title="Trading">
          <p class="muted">Mock mode shows recorded market data only; switch Mock data off to log in and trade.</p>
        </Section>
      ) : inSession ? (
        <Trading ex={exchange} onLogout={() => setLoggedIn(false)} />
      ) : (
        <Section title="Log in to trade">
          <Login ex={exchange} onDone={() => setLoggedIn(true)} />
        </Section>
      )}
    </Page>
  );
}
