/** Explorer: blocks live over the node's WebSocket, txs, accounts, job escrows, validators. */
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { BlockHeader } from '../api/types';
import { DepositSettlement, Settlement } from '../components/jobview';
import { Amount, Badge, ErrorBox, Hash, Loading, Page, Section, Table, useAsync } from '../components/ui';
import { isValidAddress } from '../lib/address';
import { formatDuration, timeAgo } from '../lib/format';
import { useApi } from '../state';

const KEEP = 15;

function useLiveBlocks() {
  const api = useApi();
  const [blocks, setBlocks] = useState<BlockHeader[]>([]);
  const [status, setStatus] = useState('connecting');
  useEffect(() => {
    let live = true;
    setBlocks([]);
    void (async () => {
      const head = await api.head();
      const heights = Array.from({ length: Math.min(KEEP, head.height + 1) }, (_, i) => head.height - i);
      const recent = await Promise.all(heights.map((h) => api.block(h).catch(() => null)));
      if (live) setBlocks((now) => merge(now, recent.filter((b): b is BlockHeader => b !== null)));
    })().catch(() => undefined);
    const stop = api.subscribeChain({
      onBlock: (h) => live && setBlocks((now) => merge(now, [h])),
      onStatus: (s) => live && setStatus(s),
    });
    return () => {
      live = false;
      stop();
    };
  }, [api]);
  return { blocks, status };
}

function merge(now: BlockHeader[], more: BlockHeader[]): BlockHeader[] {
  const byHeight = new Map(now.map((b) => [b.height, b]));
  for (const b of more) byHeight.set(b.height, b);
  return [...byHeight.values()].sort((a, b) => b.height - a.height).slice(0, KEEP);
}

function Search() {
  const [q, setQ] = useState('');
  const [error, setError] = useState<string>();
  const go = (e: Event) => {
    e.preventDefault();
    const v = q.trim();
    setError(undefined);
    if (/^\d+$/.test(v)) location.hash = `#/explorer/block/${v}`;
    else if (/^[0-9a-fA-F]{64}$/.test(v)) location.hash = `#/explorer/tx/${v.toLowerCase()}`;
    else if (v.startsWith('ait1')) {
      if (isValidAddress(v)) location.hash = `#/explorer/account/${v}`;
      else setError('not a valid address (checksum)');
    } else if (/^[A-Za-z0-9_-]{1,64}$/.test(v)) location.hash = `#/explorer/job/${v}`;
    else setError('enter a block height, a tx or block hash, an ait1… address or a job id');
  };
  return (
    <form class="filters" role="search" onSubmit={go}>
      <label>
        Search the chain
        <input type="search" value={q} placeholder="height, hash, ait1… address, job id" onInput={(e) => setQ((e.target as HTMLInputElement).value)} />
      </label>
      <button type="submit">Go</button>
      <ErrorBox error={error} />
    </form>
  );
}

function Blocks() {
  const { blocks, status } = useLiveBlocks();
  const head = blocks[0];
  return (
    <Section
      title="Latest blocks"
      actions={
        <span>
          <Badge state={status} /> <span data-testid="latest-height">{head ? `#${head.height}` : '…'}</span>
        </span>
      }
    >
      {blocks.length === 0 ? (
        <Loading what="blocks" />
      ) : (
        <Table caption="Latest blocks" head={['Height', 'Hash', 'Txs', 'Proposer', 'Time']}>
          {blocks.map((b, i) => (
            <tr key={b.height} class={i === 0 ? 'fresh' : ''}>
              <td>
                <a href={`#/explorer/block/${b.height}`}>{b.height}</a>
              </td>
              <td>
                <Hash value={b.hash} href={`#/explorer/block/${b.hash}`} />
              </td>
              <td>{b.tx_count}</td>
              <td>
                <Hash value={b.proposer} href={`#/explorer/account/${b.proposer}`} />
              </td>
              <td>{timeAgo(b.time_ms)}</td>
            </tr>
          ))}
        </Table>
      )}
    </Section>
  );
}

function Validators() {
  const api = useApi();
  const v = useAsync(() => api.validators(), [api], 10000);
  if (v.error) return <ErrorBox error={v.error} />;
  if (!v.data) return <Loading what="validators" />;
  return (
    <>
      <p class="muted">
        Consensus {v.data.consensus}, total power {v.data.total_power}.
      </p>
      <Table caption="Validators" head={['Validator', 'Status', 'Power', 'Authority', 'Bonded', 'Self stake']}>
        {v.data.validators.map((x) => (
          <tr key={x.address}>
            <td>
              <Hash value={x.address} href={`#/explorer/account/${x.address}`} />
            </td>
            <td>
              <Badge state={x.status} />
            </td>
            <td>{x.power}</td>
            <td>{x.authority ? 'yes' : 'no'}</td>
            <td>
              <Amount value={x.bonded} unit={false} />
            </td>
            <td>
              <Amount value={x.self_stake} unit={false} />
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}

function TxFields({ tx }: { tx: Record<string, unknown> }) {
  return (
    <dl class="facts">
      {Object.entries(tx).map(([k, v]) => (
        <Fragment key={k}>
          <dt>{k}</dt>
          <dd class="mono wrap">
            {typeof v === 'string' && isValidAddress(v) ? (
              <a href={`#/explorer/account/${v}`}>{v}</a>
            ) : typeof v === 'object' ? (
              JSON.stringify(v)
            ) : (
              String(v)
            )}
          </dd>
        </Fragment>
      ))}
    </dl>
  );
}

function BlockView({ blockRef }: { blockRef: string }) {
  const api = useApi();
  const block = useAsync(() => api.block(blockRef), [api, blockRef]);
  return (
    <Page title={`Block ${blockRef.length > 20 ? blockRef.slice(0, 12) + '…' : blockRef}`}>
      <p>
        <a href="#/explorer">← explorer</a>
      </p>
      <ErrorBox error={block.error} />
      {block.data && (
        <>
          <Section title="Header">
            <dl class="facts">
              <dt>Height</dt>
              <dd>
                {block.data.height > 0 && <a href={`#/explorer/block/${block.data.height - 1}`} aria-label="previous block">←</a>} {block.data.height}{' '}
                <a href={`#/explorer/block/${block.data.height + 1}`} aria-label="next block">→</a>
              </dd>
              <dt>Hash</dt>
              <dd class="mono wrap">{block.data.hash}</dd>
              <dt>Time</dt>
              <dd>{new Date(block.data.time_ms).toLocaleString()}</dd>
              <dt>Proposer</dt>
              <dd>
                <Hash value={block.data.proposer} full href={`#/explorer/account/${block.data.proposer}`} />
              </dd>
              <dt>State root</dt>
              <dd class="mono wrap">{block.data.state_root}</dd>
            </dl>
          </Section>
          <Section title={`Transactions (${block.data.tx_count})`}>
            {(block.data.txs ?? []).map((tx, i) => (
              <details key={i}>
                <summary>
                  {tx.type} from <Hash value={tx.sender} /> (nonce {tx.nonce}, fee {tx.fee})
                </summary>
                <TxFields tx={tx} />
              </details>
            ))}
            {block.data.tx_count === 0 && <p class="muted">No transactions.</p>}
          </Section>
        </>
      )}
    </Page>
  );
}

function TxView({ hash }: { hash: string }) {
  const api = useApi();
  const tx = useAsync(() => api.tx(hash), [api, hash]);
  const status = useAsync(() => api.txStatus(hash), [api, hash], 2000);
  return (
    <Page title="Transaction">
      <p>
        <a href="#/explorer">← explorer</a>
      </p>
      <p class="mono wrap">{hash}</p>
      {status.data && (
        <p>
          <Badge state={status.data.status} /> {status.data.height !== undefined && <a href={`#/explorer/block/${status.data.height}`}>block {status.data.height}</a>}
        </p>
      )}
      <ErrorBox error={tx.error} />
      {tx.data && (
        <Section title="Fields">
          <TxFields tx={tx.data} />
        </Section>
      )}
    </Page>
  );
}

function AccountView({ address }: { address: string }) {
  const api = useApi();
  const account = useAsync(() => api.account(address), [api, address], 3000);
  return (
    <Page title="Account">
      <p>
        <a href="#/explorer">← explorer</a>
      </p>
      <p class="mono wrap">{address}</p>
      <ErrorBox error={account.error} />
      {account.data && (
        <dl class="facts">
          <dt>Balance</dt>
          <dd>
            <Amount value={account.data.balance} />
          </dd>
          <dt>Nonce</dt>
          <dd>{account.data.nonce}</dd>
          <dt>As of block</dt>
          <dd>{account.data.height}</dd>
        </dl>
      )}
    </Page>
  );
}

function JobView({ id }: { id: string }) {
  const api = useApi();
  // a job is paid by its own escrow or from a deposit (a settle_batch entry)
  const job = useAsync(async () => {
    const [escrow, paid] = await Promise.all([api.chainJob(id), api.paidJob(id).catch(() => null)]);
    return { escrow, paid };
  }, [api, id], 3000);
  return (
    <Page title={`Job ${id} on chain`}>
      <p>
        <a href="#/explorer">← explorer</a>
      </p>
      <ErrorBox error={job.error} />
      {job.data?.paid ? <DepositSettlement paid={job.data.paid} /> : job.data && <Settlement chain={job.data.escrow} />}
    </Page>
  );
}

export function ExplorerPage({ route }: { route: string[] }) {
  const [kind, arg] = route;
  if (kind === 'block' && arg) return <BlockView blockRef={arg} />;
  if (kind === 'tx' && arg) return <TxView hash={arg} />;
  if (kind === 'account' && arg) return <AccountView address={arg} />;
  if (kind === 'job' && arg) return <JobView id={arg} />;
  return (
    <Page title="Explorer" intro={`Blocks arrive live over the node's WebSocket. Block time target: ${formatDuration(1000)}.`}>
      <Search />
      <Blocks />
      <Section title="Validators">
        <Validators />
      </Section>
    </Page>
  );
}
