/** One job in full: status, cost, receipt with in-browser verification, settlement on chain, why this miner. */
import type { ChainJob, Job, PaidJob, ReceiptResponse } from '../api/types';
import { formatDuration } from '../lib/format';
import { checkReceipt } from '../lib/receipt';
import { useApi } from '../state';
import { Amount, Badge, ErrorBox, Hash, Section, Table, useAsync } from './ui';

export function Verification({ receipt, chainReceiptHash, jobId }: { receipt: ReceiptResponse; chainReceiptHash: string; jobId: string }) {
  // before the settlement block there is nothing on chain to compare with yet: that check waits
  const checks = checkReceipt(receipt.receipt, { jobId, receiptHash: receipt.receipt_hash, chainReceiptHash: chainReceiptHash || undefined });
  const allOk = checks.every((c) => c.ok);
  return (
    <div data-testid="verification">
      <p>
        <Badge state={allOk ? 'verified' : 'mismatch'} /> checked in this browser
        {!chainReceiptHash && <span class="muted"> — the on-chain anchor is checked once the settlement is committed</span>}
      </p>
      <ul class="checks">
        {checks.map((c) => (
          <li key={c.name} class={c.ok ? 'ok' : 'bad'}>
            <span aria-hidden="true">{c.ok ? '✔' : '✘'}</span> <strong>{c.name}</strong>{' '}
            <span class="sr-only">{c.ok ? 'passed' : 'failed'}</span>
            <span class="muted mono small">{c.detail}</span>
          </li>
        ))}
      </ul>
    </div>
  );
}

export function Settlement({ chain }: { chain: ChainJob | null }) {
  if (!chain) return <p class="muted">Nothing on chain for this job yet (not settled, paid by another coordinator, or unpaid).</p>;
  const e = chain.escrow;
  return (
    <dl class="facts" data-testid="settlement">
      <dt>Escrow</dt>
      <dd>
        <Badge state={e.state} /> <Amount value={e.amount} /> locked in block{' '}
        <a href={`#/explorer/block/${e.opened_height}`}>{e.opened_height}</a>
      </dd>
      <dt>Paid to miner</dt>
      <dd>
        <Amount value={e.paid_to_miner} />
      </dd>
      <dt>Protocol fee</dt>
      <dd>
        <Amount value={e.protocol_fee} />
      </dd>
      <dt>Refunded</dt>
      <dd>
        <Amount value={e.refunded} />
      </dd>
      <dt>Closed</dt>
      <dd>{e.closed_height ? <a href={`#/explorer/block/${e.closed_height}`}>block {e.closed_height}</a> : 'open'}</dd>
      <dt>Txs</dt>
      <dd>
        {chain.events.map((ev) => (
          <span key={ev.tx_hash} class="chip">
            {ev.kind} <Hash value={ev.tx_hash} href={`#/explorer/tx/${ev.tx_hash}`} />
          </span>
        ))}
      </dd>
    </dl>
  );
}

/** A deposit-paid job: the chain's payment record from the coordinator's settle_batch. */
export function DepositSettlement({ paid }: { paid: PaidJob }) {
  return (
    <dl class="facts" data-testid="settlement">
      <dt>Paid from</dt>
      <dd>
        <Badge state="settled" /> deposit <Hash value={paid.deposit_id} /> in block <a href={`#/explorer/block/${paid.height}`}>{paid.height}</a>
      </dd>
      <dt>Paid to miner</dt>
      <dd>
        <Amount value={paid.paid_to_miner} /> to <Hash value={paid.miner} href={`#/explorer/account/${paid.miner}`} />
      </dd>
      <dt>Protocol fee</dt>
      <dd>
        <Amount value={paid.protocol_fee} />
      </dd>
      <dt>Receipt anchored</dt>
      <dd>
        <Hash value={paid.receipt_hash} />
      </dd>
    </dl>
  );
}

export function WhyThisMiner({ jobId }: { jobId: string }) {
  const api = useApi();
  const match = useAsync(() => api.explainMatch(jobId), [api, jobId]);
  if (match.error) return <ErrorBox error={match.error} />;
  if (!match.data) return <p class="muted">Ranking the live miners…</p>;
  const { ranking } = match.data;
  return (
    <>
      <p class="muted">
        Policy <strong>{ranking.policy}</strong>: the live miners that serve this model, ranked now by measured success, latency,
        throughput, price, load, stake and age.
      </p>
      <Table caption="Miners ranked for this job" head={['#', 'Miner', 'Score', 'Why']}>
        {ranking.candidates.map((c) => (
          <tr key={c.miner}>
            <td>{c.rank}</td>
            <td>
              <Hash value={c.miner} href={`#/explorer/account/${c.miner}`} />
              {c.exploration && <span class="chip">exploring</span>}
            </td>
            <td>{c.score.toFixed(3)}</td>
            <td>
              <ul class="reasons">
                {c.reasons.map((r) => (
                  <li key={r}>{r}</li>
                ))}
              </ul>
            </td>
          </tr>
        ))}
      </Table>
      {ranking.excluded.length > 0 && (
        <ul class="muted">
          {ranking.excluded.map((x) => (
            <li key={x.miner}>
              <Hash value={x.miner} /> excluded: {x.reason}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

export function JobSummary({ job }: { job: Job }) {
  const ran = job.finished_at_ms && job.started_at_ms ? job.finished_at_ms - job.started_at_ms : null;
  return (
    <dl class="facts">
      <dt>Job</dt>
      <dd>
        <Hash value={job.job_id} full /> <Badge state={job.state} />
      </dd>
      <dt>Model</dt>
      <dd>{job.model}</dd>
      <dt>Miner</dt>
      <dd>{job.miner ? <Hash value={job.miner} href={`#/explorer/account/${job.miner}`} /> : 'not assigned yet'}</dd>
      <dt>Max price</dt>
      <dd>
        <Amount value={job.max_price} />
      </dd>
      <dt>Ran</dt>
      <dd>{formatDuration(ran)}</dd>
    </dl>
  );
}

/** Receipt, settlement and verification of a finished job (refreshes until the chain has settled it). */
export function JobOutcome({ job }: { job: Job }) {
  const api = useApi();
  const receipt = useAsync(() => (job.state === 'completed' ? api.receipt(job.job_id) : Promise.resolve(null)), [api, job.job_id, job.state]);
  // paid per job (an escrow) or from a deposit (a settle_batch entry): ask the chain for both
  const chain = useAsync(
    async () => {
      const [escrow, paid] = await Promise.all([api.chainJob(job.job_id), api.paidJob(job.job_id).catch(() => null)]);
      return { escrow, paid };
    },
    [api, job.job_id],
    1500,
  );
  const escrow = chain.data?.escrow ?? null;
  const paid = chain.data?.paid ?? null;
  const escrowClosed = escrow !== null && escrow.escrow.state !== 'open';
  const anchored = paid?.receipt_hash ?? (escrowClosed ? escrow.escrow.receipt_hash : '');
  return (
    <>
      {receipt.data && (
        <Section title="Receipt">
          <dl class="facts" data-testid="receipt">
            <dt>Receipt hash</dt>
            <dd>
              <Hash value={receipt.data.receipt_hash} full />
            </dd>
            <dt>Tokens</dt>
            <dd>
              {receipt.data.receipt.units.prompt_tokens} prompt + {receipt.data.receipt.units.completion_tokens} generated in{' '}
              {formatDuration(receipt.data.receipt.units.compute_ms)}
            </dd>
            <dt>Price</dt>
            <dd>
              <Amount value={receipt.data.receipt.total_price} /> ({receipt.data.receipt.unit_price} base units per token)
            </dd>
          </dl>
        </Section>
      )}
      <Section title="Settlement on chain">
        {paid ? (
          <DepositSettlement paid={paid} />
        ) : escrowClosed ? (
          <Settlement chain={escrow} />
        ) : (
          <p class="muted">Waiting for the settlement block…</p>
        )}
        <ErrorBox error={chain.error} />
      </Section>
      {receipt.data && (
        <Section title="Verification">
          <Verification receipt={receipt.data} chainReceiptHash={anchored} jobId={job.job_id} />
        </Section>
      )}
      <ErrorBox error={receipt.error} />
    </>
  );
}
