/** The API key's deposit with the coordinator: balance, reserved, pending, spent, cap; top up and withdraw (signed here). */
import { useState } from 'preact/hooks';
import { changeDeposit } from '../lib/chain';
import { parseAitbc } from '../lib/format';
import { settings, unlockedKey, useApi, useStore } from '../state';
import { Amount, ErrorBox, Hash, Loading, useAsync } from './ui';

export function DepositPanel() {
  const api = useApi();
  const s = useStore(settings);
  const key = useStore(unlockedKey);
  const [tick, setTick] = useState(0);
  const account = useAsync(async () => {
    const view = await api.depositAccount();
    return view && { view, chain: await api.chainDeposit(view.deposit_id) };
  }, [api, s.apiKey, tick], 3000);
  const [amount, setAmount] = useState('1');
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string>();
  const [error, setError] = useState<string>();

  if (account.error) return <ErrorBox error={account.error} />;
  if (account.data === undefined) return <Loading what="your deposit" />;
  if (account.data === null) {
    return (
      <p class="muted" data-testid="deposit-none">
        This API key pays per job (an escrow signed in this browser): it has no deposit. Open one with{' '}
        <code>aitbc deposit open</code> and bind it with <code>aitbc coordinator keys bind</code>.
      </p>
    );
  }
  const d = account.data.view;
  const chain = account.data.chain;
  const jobCount = Object.values(d.jobs ?? {}).reduce((n, c) => n + c, 0);
  const act = async (kind: 'top_up_deposit' | 'withdraw_deposit') => {
    if (!key) return;
    setBusy(true);
    setError(undefined);
    setDone(undefined);
    try {
      const { hash, height } = await changeDeposit(api, key, kind, d.deposit_id, Number(parseAitbc(amount)));
      setDone(`${kind === 'top_up_deposit' ? 'top-up' : 'withdrawal'} committed in block ${height} (tx ${hash.slice(0, 12)}…)`);
      setTick((t) => t + 1);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <dl class="facts" data-testid="deposit">
        <dt>Deposit</dt>
        <dd>
          <Hash value={d.deposit_id} /> ({d.mode}) with coordinator <Hash value={d.coordinator} />
        </dd>
        <dt>Balance on chain</dt>
        <dd data-testid="deposit-balance">
          <Amount value={chain?.balance ?? d.balance} />{' '}
          <span class="muted small">
            (the coordinator counts <Amount value={d.balance} unit={false} /> at block {d.height})
          </span>
        </dd>
        <dt>Reserved</dt>
        <dd>
          <Amount value={d.reserved} /> <span class="muted small">worst case of your jobs in flight</span>
        </dd>
        <dt>Pending</dt>
        <dd>
          <Amount value={d.pending} /> <span class="muted small">completed, not yet settled</span>
        </dd>
        <dt>Available</dt>
        <dd>
          <Amount value={d.available} />
        </dd>
        <dt>Spent</dt>
        <dd>
          <Amount value={d.spent} /> over {jobCount} job{jobCount === 1 ? '' : 's'}
        </dd>
        {(chain?.withdrawal_amount ?? d.withdrawing) > 0 && (
          <>
            <dt>Withdrawing</dt>
            <dd data-testid="deposit-withdrawing">
              <Amount value={chain?.withdrawal_amount ?? d.withdrawing} /> paid out at block {chain?.withdrawal_height ?? d.withdrawal_height}
            </dd>
          </>
        )}
        {d.cap.per_period !== null && (
          <>
            <dt>Spending cap</dt>
            <dd>
              <Amount value={d.cap.per_period} /> per {d.cap.period_blocks} blocks (room now: <Amount value={d.cap.room} />)
            </dd>
          </>
        )}
      </dl>
      {key ? (
        <form class="form" onSubmit={(e) => e.preventDefault()} aria-label="Top up or withdraw">
          <div class="row">
            <label>
              Amount (AITBC)
              <input value={amount} inputMode="decimal" required onInput={(e) => setAmount((e.target as HTMLInputElement).value)} />
            </label>
            <button type="button" disabled={busy} onClick={() => void act('top_up_deposit')}>
              Top up
            </button>
            <button type="button" class="secondary" disabled={busy || key.address !== d.client} onClick={() => void act('withdraw_deposit')}>
              Withdraw
            </button>
          </div>
          {done && (
            <p role="status" data-testid="deposit-done">
              {done}
            </p>
          )}
          <ErrorBox error={error} />
        </form>
      ) : (
        <p class="muted">
          Unlock your key on the <a href="#/account">Account</a> page to top up or withdraw (signed in this browser).
        </p>
      )}
    </>
  );
}
