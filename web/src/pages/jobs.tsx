/** My jobs: every job of this API key with its cost; one job in full with receipt, settlement, verification. */
import { DepositPanel } from '../components/deposit';
import { JobOutcome, JobSummary, WhyThisMiner } from '../components/jobview';
import { Amount, Badge, ErrorBox, Hash, Loading, Page, Section, Table, useAsync } from '../components/ui';
import { timeAgo } from '../lib/format';
import { settings, unlockedKey, useApi, useStore } from '../state';

function JobDetail({ jobId }: { jobId: string }) {
  const api = useApi();
  const job = useAsync(() => api.job(jobId), [api, jobId], 3000);
  const result = useAsync(
    () => (job.data?.state === 'completed' ? api.result(jobId) : Promise.resolve(null)),
    [api, jobId, job.data?.state],
  );
  return (
    <Page title={`Job ${jobId}`}>
      <p>
        <a href="#/jobs">← all my jobs</a>
      </p>
      <ErrorBox error={job.error} />
      {job.data && (
        <>
          <Section title="Job">
            <JobSummary job={job.data} />
          </Section>
          {result.data?.output.text !== undefined && (
            <Section title="Answer">
              <output class="answer">{result.data.output.text}</output>
            </Section>
          )}
          <JobOutcome job={job.data} />
          {job.data.miner && (
            <Section title="Why this miner">
              <WhyThisMiner jobId={jobId} />
            </Section>
          )}
        </>
      )}
    </Page>
  );
}

function AccountCard() {
  const api = useApi();
  const key = useStore(unlockedKey);
  const account = useAsync(() => (key ? api.account(key.address) : Promise.resolve(null)), [api, key], 5000);
  if (!key) {
    return (
      <p class="muted">
        Unlock your key on the <a href="#/account">Account</a> page to see its balance here.
      </p>
    );
  }
  return (
    <dl class="facts">
      <dt>Key</dt>
      <dd>
        <Hash value={key.address} href={`#/explorer/account/${key.address}`} />
      </dd>
      <dt>On-chain balance</dt>
      <dd>{account.data ? <Amount value={account.data.balance} /> : '…'}</dd>
      <ErrorBox error={account.error} />
    </dl>
  );
}

export function JobsPage({ jobId }: { jobId?: string }) {
  const api = useApi();
  const s = useStore(settings);
  const jobs = useAsync(() => api.jobs(), [api, s.apiKey], 5000);
  if (jobId) return <JobDetail jobId={jobId} />;
  const list = jobs.data ?? [];
  const spent = list.reduce((n, j) => n + (j.payment?.paid_to_miner ?? 0) + (j.payment?.protocol_fee ?? 0), 0);
  // (deposit-paid jobs report their charge in the deposit's `spent`; per-job escrows here)
  return (
    <Page title="My jobs" intro="The jobs of your API key, your deposit with the coordinator, and what each job cost on chain.">
      <Section title="Deposit">
        <DepositPanel />
      </Section>
      <Section title="Account">
        <AccountCard />
        <p>
          Spent through per-job escrows on the jobs below: <Amount value={spent} /> (paid to miners plus protocol fees).
        </p>
      </Section>
      <Section title="Jobs">
        {api.kind === 'live' && !s.apiKey && (
          <p class="error">
            Set your API key on the <a href="#/account">Account</a> page.
          </p>
        )}
        <ErrorBox error={jobs.error} />
        {!jobs.data && !jobs.error && <Loading what="jobs" />}
        {jobs.data && (
          <Table caption="My jobs" head={['Job', 'Model', 'State', 'Miner', 'Max price', 'Paid', 'Payment', 'Created']}>
            {list.map((j) => (
              <tr key={j.job_id}>
                <td>
                  <a href={`#/jobs/${j.job_id}`} class="mono">
                    {j.job_id}
                  </a>
                </td>
                <td>{j.model}</td>
                <td>
                  <Badge state={j.state} />
                </td>
                <td>
                  <Hash value={j.miner} />
                </td>
                <td>
                  <Amount value={j.max_price} unit={false} />
                </td>
                <td>
                  <Amount value={j.payment?.paid_to_miner ?? null} unit={false} />
                </td>
                <td>{j.payment ? <Badge state={j.payment.state} /> : '—'}</td>
                <td>{timeAgo(j.created_at_ms)}</td>
              </tr>
            ))}
          </Table>
        )}
        {jobs.data && list.length === 0 && <p class="muted">No jobs yet: <a href="#/submit">submit one</a>.</p>}
      </Section>
    </Page>
  );
}
