/**
 * Stats dashboard, sampled from the live services while the page is open: tokens/s served and
 * jobs/min (coordinator counters), online miners, prices per model, block times (WebSocket) and
 * settlement lag (job finished → settling block, from the chain).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { Chart } from '../components/chart';
import { ErrorBox, Page, Section, Table, useAsync } from '../components/ui';
import { formatDuration } from '../lib/format';
import { metricSum, parsePrometheus } from '../lib/prom';
import { Series, counterRate } from '../lib/store';
import { useApi } from '../state';

const SAMPLE_MS = 3000;
const POINTS = 120;

interface Sampled {
  times: number[];
  tokensPerS: (number | null)[];
  jobsPerMin: (number | null)[];
  miners: (number | null)[];
  minPrice: (number | null)[];
  maxPrice: (number | null)[];
}

function useSamples() {
  const api = useApi();
  const [snapshot, setSnapshot] = useState<Sampled | null>(null);
  const [error, setError] = useState<Error>();
  useEffect(() => {
    const series = {
      tokens: new Series(POINTS),
      jobs: new Series(POINTS),
      miners: new Series(POINTS),
      minPrice: new Series(POINTS),
      maxPrice: new Series(POINTS),
    };
    let prev: { t: number; tokens: number; jobs: number } | null = null;
    let live = true;
    const sample = async () => {
      try {
        const [metrics, models] = await Promise.all([api.coordinatorMetrics(), api.models()]);
        const samples = parsePrometheus(metrics);
        const t = Date.now();
        const tokens = metricSum(samples, 'aitbc_tokens_served_total');
        const jobs = metricSum(samples, 'aitbc_jobs_finished_total', { state: 'completed' });
        const text = models.filter((m) => m.kind === 'text');
        series.tokens.push(t, counterRate(prev && { t: prev.t, v: prev.tokens }, { t, v: tokens }));
        const jobRate = counterRate(prev && { t: prev.t, v: prev.jobs }, { t, v: jobs });
        series.jobs.push(t, jobRate === null ? null : jobRate * 60);
        series.miners.push(t, metricSum(samples, 'aitbc_miners_online'));
        series.minPrice.push(t, text.length ? Math.min(...text.map((m) => m.min_unit_price)) : null);
        series.maxPrice.push(t, text.length ? Math.max(...text.map((m) => m.max_unit_price)) : null);
        prev = { t, tokens, jobs };
        if (live) {
          setError(undefined);
          setSnapshot({
            times: [...series.tokens.times],
            tokensPerS: [...series.tokens.values],
            jobsPerMin: [...series.jobs.values],
            miners: [...series.miners.values],
            minPrice: [...series.minPrice.values],
            maxPrice: [...series.maxPrice.values],
          });
        }
      } catch (e) {
        if (live) setError(e as Error);
      }
    };
    void sample();
    const timer = setInterval(sample, SAMPLE_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [api]);
  return { snapshot, error };
}

function useBlockTimes() {
  const api = useApi();
  const [data, setData] = useState<{ times: number[]; gaps: (number | null)[] }>({ times: [], gaps: [] });
  const last = useRef<number | null>(null);
  useEffect(() => {
    const s = new Series(POINTS);
    last.current = null;
    return api.subscribeChain({
      onBlock: (h) => {
        const now = h.time_ms;
        s.push(now, last.current === null ? null : now - last.current);
        last.current = now;
        setData({ times: [...s.times], gaps: [...s.values] });
      },
    });
  }, [api]);
  return data;
}

function SettlementLag() {
  const api = useApi();
  const lag = useAsync(async () => {
    const settled = (await api.jobs()).filter((j) => j.payment?.state === 'settled' && j.payment.height && j.finished_at_ms).slice(0, 10);
    return Promise.all(
      settled.map(async (j) => {
        const block = await api.block(j.payment!.height!);
        return { job: j.job_id, lag: block.time_ms - j.finished_at_ms!, height: block.height };
      }),
    );
  }, [api], 15000);
  if (lag.error) return <ErrorBox error={lag.error} />;
  if (!lag.data) return <p class="muted">Measuring…</p>;
  if (lag.data.length === 0) return <p class="muted">No settled job of yours yet.</p>;
  const sorted = lag.data.map((l) => l.lag).sort((a, b) => a - b);
  return (
    <>
      <p>
        Median {formatDuration(sorted[Math.floor(sorted.length / 2)])} from a job's end to the block that paid its miner (your last{' '}
        {sorted.length} settled jobs).
      </p>
      <Table caption="Settlement lag of recent jobs" head={['Job', 'Settled in block', 'Lag']}>
        {lag.data.map((l) => (
          <tr key={l.job}>
            <td>
              <a class="mono" href={`#/jobs/${l.job}`}>
                {l.job}
              </a>
            </td>
            <td>
              <a href={`#/explorer/block/${l.height}`}>{l.height}</a>
            </td>
            <td>{formatDuration(l.lag)}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}

export function StatsPage() {
  const { snapshot, error } = useSamples();
  const blocks = useBlockTimes();
  return (
    <Page title="Stats" intro={`Sampled every ${SAMPLE_MS / 1000} s from the coordinator's metrics and the node's WebSocket while this page is open.`}>
      <ErrorBox error={error} />
      <div class="grid">
        <Section title="Throughput">
          <Chart title="Tokens served per second" unit="tokens/s" times={snapshot?.times ?? []} lines={[{ label: 'tokens/s', values: snapshot?.tokensPerS ?? [] }]} />
          <Chart title="Jobs completed per minute" unit="jobs/min" times={snapshot?.times ?? []} lines={[{ label: 'jobs/min', values: snapshot?.jobsPerMin ?? [] }]} />
        </Section>
        <Section title="Miners and prices">
          <Chart title="Online miners" unit="" times={snapshot?.times ?? []} lines={[{ label: 'miners', values: snapshot?.miners ?? [] }]} />
          <Chart
            title="Price per token (text models)"
            unit="base units"
            times={snapshot?.times ?? []}
            lines={[
              { label: 'lowest', values: snapshot?.minPrice ?? [] },
              { label: 'highest', values: snapshot?.maxPrice ?? [] },
            ]}
          />
        </Section>
        <Section title="Chain">
          <Chart title="Block time" unit="ms" times={blocks.times} lines={[{ label: 'ms between blocks', values: blocks.gaps }]} />
          <h3>Settlement lag</h3>
          <SettlementLag />
        </Section>
      </div>
    </Page>
  );
}
