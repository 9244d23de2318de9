/** Marketplace: miners' offers (pool hub registry + scores), models and prices, and open bids. */
import { useState } from 'preact/hooks';
import type { MinerRecord } from '../api/types';
import { auditText, offersOf, sortOffers, type SortKey } from '../lib/offers';
import { Amount, Badge, ErrorBox, Hash, Loading, Page, Section, Table, useAsync } from '../components/ui';
import { formatDuration, formatPercent, formatRate } from '../lib/format';
import { settings, useApi, useStore } from '../state';

function Offers() {
  const api = useApi();
  const data = useAsync(async () => {
    const [miners, board] = await Promise.all([api.poolMiners(), api.leaderboard()]);
    if (miners === null) return null;
    // each miner's bond and audit record, from the chain
    const shown = miners.slice(0, 50);
    const records = await Promise.all(shown.map((m) => api.minerRecord(m.miner).catch(() => null)));
    const byMiner = new Map(shown.map((m, i) => [m.miner, records[i] ?? null]));
    return { offers: offersOf(miners, board ?? []), records: byMiner };
  }, [api], 5000);
  const [filter, setFilter] = useState('');
  const [sort, setSort] = useState<SortKey>('score');
  const [onlineOnly, setOnlineOnly] = useState(true);
  if (data.error) return <ErrorBox error={data.error} />;
  if (data.data === undefined) return <Loading what="offers" />;
  if (data.data === null) return <p class="muted">No pool hub configured: the offers below are the coordinator's model list.</p>;
  const needle = filter.toLowerCase();
  const records: Map<string, MinerRecord | null> = data.data.records;
  const rows = sortOffers(
    data.data.offers.filter((o) => (!onlineOnly || o.online) && (!needle || `${o.model} ${o.miner} ${o.hardware}`.toLowerCase().includes(needle))),
    sort,
  );
  return (
    <>
      <div class="filters" role="search">
        <label>
          Filter
          <input type="search" value={filter} placeholder="model, miner, GPU" onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Sort by
          <select value={sort} onChange={(e) => setSort((e.target as HTMLSelectElement).value as SortKey)}>
            <option value="score">score</option>
            <option value="price">price (lowest)</option>
            <option value="tps">tokens/s</option>
            <option value="reliability">success</option>
          </select>
        </label>
        <label class="inline">
          <input type="checkbox" checked={onlineOnly} onChange={(e) => setOnlineOnly((e.target as HTMLInputElement).checked)} /> online only
        </label>
      </div>
      <Table
        caption="Miners' offers"
        head={['Miner', 'Model', 'Hardware', 'Price / token', 'Score', 'Success', 'First token', 'Tokens/s', 'Jobs', 'Bond (chain)', 'Audits passed', 'Load']}
      >
        {rows.map((o) => (
          <tr key={o.miner + o.model}>
            <td>
              <Hash value={o.miner} href={`#/explorer/account/${o.miner}`} /> <Badge state={o.online ? 'online' : 'offline'} />
            </td>
            <td>
              {o.model} <span class="muted small">({o.kind})</span>
              <br />
              <Hash value={o.digest} />
            </td>
            <td>{o.hardware}</td>
            <td>{o.price} base units</td>
            <td>{o.score === null ? '—' : o.score.toFixed(3)}</td>
            <td>{formatPercent(o.reliability)}</td>
            <td>{formatDuration(o.ttft)}</td>
            <td>{formatRate(o.tps, '')}</td>
            <td>{o.jobs}</td>
            <td>
              <Amount value={records.get(o.miner)?.bond ?? o.bond} unit={false} />
            </td>
            <td>{auditText(records.get(o.miner))}</td>
            <td>{o.load}</td>
          </tr>
        ))}
      </Table>
      {rows.length === 0 && <p class="muted">No offer matches.</p>}
      <p class="muted small">
        Score and its factors come from the pool hub's measured outcomes (success, latency, throughput, price, load, stake, age);
        bond and audits (re-runs of settled jobs by other bonded miners) come from the chain. Open a job's page for the full "why
        this miner" explanation.
      </p>
    </>
  );
}

function Models() {
  const api = useApi();
  const models = useAsync(() => api.models(), [api], 5000);
  if (models.error) return <ErrorBox error={models.error} />;
  if (!models.data) return <Loading what="models" />;
  return (
    <Table caption="Models served now" head={['Model', 'Kind', 'Digest', 'Miners', 'Price range / token']}>
      {models.data.map((m) => (
        <tr key={m.name + m.digest}>
          <td>{m.name}</td>
          <td>{m.kind}</td>
          <td>
            <Hash value={m.digest} />
          </td>
          <td>{m.miners}</td>
          <td>
            {m.min_unit_price}–{m.max_unit_price} base units
          </td>
        </tr>
      ))}
    </Table>
  );
}

function Bids() {
  const api = useApi();
  const s = useStore(settings);
  const jobs = useAsync(async () => (await api.jobs()).filter((j) => ['queued', 'assigned', 'running'].includes(j.state)), [api, s.apiKey], 3000);
  if (api.kind === 'live' && !s.apiKey) return <p class="muted">Set an API key on the Account page to see your open bids.</p>;
  if (jobs.error) return <ErrorBox error={jobs.error} />;
  if (!jobs.data) return <Loading what="bids" />;
  if (jobs.data.length === 0) return <p class="muted">No open bid: every job of yours has been taken. <a href="#/submit">Place one</a>.</p>;
  return (
    <Table caption="My open bids" head={['Job', 'Model', 'Max price', 'State', 'Expires']}>
      {jobs.data.map((j) => (
        <tr key={j.job_id}>
          <td>
            <a href={`#/jobs/${j.job_id}`} class="mono">
              {j.job_id}
            </a>
          </td>
          <td>{j.model}</td>
          <td>
            <Amount value={j.max_price} />
          </td>
          <td>
            <Badge state={j.state} />
          </td>
          <td>{new Date(j.expires_at_ms).toLocaleTimeString()}</td>
        </tr>
      ))}
    </Table>
  );
}

export function MarketPage() {
  return (
    <Page title="Marketplace" intro="GPU and CPU miners offer models at a price per token; a job is a bid with a maximum price that any eligible miner may take.">
      <Section title="Offers">
        <Offers />
      </Section>
      <Section title="Models">
        <Models />
      </Section>
      <Section title="Bids">
        <Bids />
      </Section>
    </Page>
  );
}
