/** Submit a job: the escrow is signed here, the tokens stream in, then receipt, settlement, verification. */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Job } from '../api/types';
import { JobOutcome, JobSummary, WhyThisMiner } from '../components/jobview';
import { Amount, ErrorBox, Page, Section, useAsync } from '../components/ui';
import { type OpenedEscrow, openEscrow } from '../lib/chain';
import { formatAitbc, parseAitbc } from '../lib/format';
import { computeDefaultMaxPrice } from '../lib/pricing';
import { settings, unlockedKey, useApi, useStore } from '../state';

interface Run {
  step: string;
  escrow?: OpenedEscrow;
  job?: Job;
  tokens: string;
  error?: string;
}

export function SubmitPage() {
  const api = useApi();
  const key = useStore(unlockedKey);
  const s = useStore(settings);
  const models = useAsync(() => api.models(), [api]);
  const [model, setModel] = useState('');
  const [prompt, setPrompt] = useState('In one sentence, what is a blockchain?');
  const [maxTokens, setMaxTokens] = useState(48);
  const [maxPriceText, setMaxPriceText] = useState('');
  const [run, setRun] = useState<Run | null>(null);
  const deposit = useAsync(() => api.depositAccount().catch(() => null), [api, s.apiKey]);
  const [payWith, setPayWith] = useState<'deposit' | 'escrow' | null>(null);
  const pay = payWith ?? (deposit.data ? 'deposit' : 'escrow');
  const abort = useRef<AbortController | null>(null);
  useEffect(() => () => abort.current?.abort(), []);

  const textModels = (models.data ?? []).filter((m) => m.kind === 'text');
  const chosen = textModels.find((m) => m.name === model) ?? textModels[0];
  const autoPrice = useMemo(() => {
    if (!chosen) return null;
    return computeDefaultMaxPrice({ type: 'inference', inputChars: prompt.length, maxTokens }, [chosen.max_unit_price]);
  }, [chosen, prompt, maxTokens]);

  const missing = [
    !s.apiKey && api.kind === 'live' ? 'an API key' : null,
    !key && api.kind === 'live' && pay === 'escrow' ? 'an unlocked signing key' : null,
  ].filter(Boolean);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!chosen) return;
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    let maxPrice: number;
    try {
      maxPrice = maxPriceText.trim() ? Number(parseAitbc(maxPriceText)) : autoPrice!;
    } catch (err) {
      setRun({ step: 'error', tokens: '', error: (err as Error).message });
      return;
    }
    const update = (patch: Partial<Run>) => setRun((r) => ({ ...(r ?? { step: '', tokens: '' }), ...patch }));
    setRun({ step: pay === 'escrow' ? 'Signing the escrow in this browser and waiting for its block…' : 'Submitting…', tokens: '' });
    try {
      let jobId: string | undefined;
      if (api.kind === 'live' && pay === 'escrow') {
        const escrow = await openEscrow(api, key!, maxPrice);
        jobId = escrow.jobId;
        update({ escrow, step: 'Escrow committed; submitting the job…' });
      }
      const job = await api.submitJob({
        type: 'inference',
        model: chosen.name,
        input: { prompt },
        params: { max_tokens: maxTokens, temperature: 0, seed: 42 },
        max_price: maxPrice,
        ...(jobId ? { job_id: jobId } : {}),
      });
      update({ job, step: 'Waiting for a miner…' });
      await api.streamJob(
        job.job_id,
        (ev) => {
          if (ev.event === 'token') {
            setRun((r) => r && { ...r, step: 'Streaming tokens…', tokens: r.tokens + String(ev.data.text ?? '') });
          } else if (ev.event === 'status') {
            const next = ev.data as unknown as Job;
            setRun((r) => r && { ...r, job: next, step: next.state === 'completed' ? 'Completed' : `Job ${next.state}…` });
          }
        },
        controller.signal,
      );
      const final = await api.job(job.job_id);
      update({ job: final, step: final.state === 'completed' ? 'Completed' : `Job ${final.state}` });
    } catch (err) {
      if ((err as Error).name !== 'AbortError') update({ step: 'error', error: (err as Error).message });
    }
  };

  return (
    <Page title="Submit a job" intro="Pay from your deposit with the coordinator, or lock an escrow for this job signed in this browser (the coordinator only sees it committed on chain).">
      <Section title="Job">
        <form class="form" onSubmit={submit}>
          <label>
            Model
            <select value={chosen?.name ?? ''} onChange={(e) => setModel((e.target as HTMLSelectElement).value)} required>
              {textModels.map((m) => (
                <option key={m.name + m.digest} value={m.name}>
                  {m.name} — {m.miners} miner{m.miners === 1 ? '' : 's'}, {m.min_unit_price}–{m.max_unit_price} base units/token
                </option>
              ))}
            </select>
          </label>
          {models.data && textModels.length === 0 && <p class="error">No live miner serves a text model right now.</p>}
          <label>
            Prompt
            <textarea rows={4} value={prompt} required onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)} />
          </label>
          <div class="row">
            <label>
              Max tokens
              <input type="number" min={1} max={4096} value={maxTokens} onInput={(e) => setMaxTokens(Number((e.target as HTMLInputElement).value) || 1)} />
            </label>
            <label>
              Max price (AITBC, blank: worst case {autoPrice == null ? '—' : formatAitbc(autoPrice)})
              <input value={maxPriceText} inputMode="decimal" placeholder={autoPrice == null ? '' : formatAitbc(autoPrice)} onInput={(e) => setMaxPriceText((e.target as HTMLInputElement).value)} />
            </label>
          </div>
          <fieldset class="pay">
            <legend>Pay with</legend>
            <label class="inline">
              <input type="radio" name="pay" value="deposit" checked={pay === 'deposit'} disabled={!deposit.data} onChange={() => setPayWith('deposit')} />
              my deposit{' '}
              {deposit.data ? (
                <span class="muted">
                  (<Amount value={deposit.data.available} /> available; the coordinator reserves the max price)
                </span>
              ) : (
                <span class="muted">(this API key has none)</span>
              )}
            </label>
            <label class="inline">
              <input type="radio" name="pay" value="escrow" checked={pay === 'escrow'} onChange={() => setPayWith('escrow')} />
              an escrow for this job, signed in this browser
            </label>
          </fieldset>
          {missing.length > 0 && (
            <p class="error" role="alert">
              To pay for a job you need {missing.join(' and ')}: see <a href="#/account">Account</a>.
            </p>
          )}
          <button type="submit" disabled={!chosen || missing.length > 0 || (run !== null && run.step !== 'Completed' && run.step !== 'error' && !run.step.startsWith('Job '))}>
            {pay === 'escrow' ? 'Sign escrow and submit' : 'Submit job'}
          </button>
        </form>
        <ErrorBox error={models.error} />
      </Section>
      {run && (
        <>
          <Section title="Progress">
            <p role="status" aria-live="polite" data-testid="step">
              {run.step === 'error' ? 'Failed' : run.step}
            </p>
            {run.escrow && (
              <p>
                Escrow <Amount value={run.escrow.amount} /> committed in block{' '}
                <a href={`#/explorer/block/${run.escrow.height}`}>{run.escrow.height}</a> (tx{' '}
                <a href={`#/explorer/tx/${run.escrow.txHash}`} class="mono">
                  {run.escrow.txHash.slice(0, 12)}…
                </a>
                )
              </p>
            )}
            <ErrorBox error={run.error} />
            <h3>Answer</h3>
            <output class="answer" data-testid="answer" aria-live="off">
              {run.tokens || '…'}
            </output>
          </Section>
          {run.job && (
            <Section title="Job">
              <JobSummary job={run.job} />
            </Section>
          )}
          {run.job?.state === 'completed' && <JobOutcome job={run.job} />}
          {run.job?.miner && (
            <Section title="Why this miner">
              <WhyThisMiner jobId={run.job.job_id} />
            </Section>
          )}
        </>
      )}
    </Page>
  );
}
