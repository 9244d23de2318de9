/**
 * Mock mode: every read answers with a response recorded from a real devnet
 * (fixtures/devnet.json, `node scripts/record-fixtures.mjs`); submitting replays the recorded
 * job (its tokens streamed again, its receipt and settlement as recorded) and new blocks are
 * the recorded ones played in a loop. Writes change nothing anywhere. The UI labels it.
 */
import type { Api, ChainEvents } from './client';
import { ApiError } from './client';
import type {
  Account,
  Block,
  BlockHeader,
  ChainInfo,
  ChainDeposit,
  ChainJob,
  Config,
  DepositAccount,
  Job,
  JobEvent,
  JobResult,
  LeaderboardEntry,
  MatchExplanation,
  ModelInfo,
  PaidJob,
  PoolMiner,
  ReceiptResponse,
  Validators,
} from './types';
import type { Tx } from '../lib/tx';

export interface Fixture {
  recorded_at: string;
  source: string;
  job_id: string;
  coordinator: {
    health: Awaited<ReturnType<Api['health']>>;
    models: { models: ModelInfo[] };
    jobs: { jobs: Job[] };
    job: Job;
    result: JobResult;
    receipt: ReceiptResponse;
    match: MatchExplanation;
    metrics: string;
    account?: DepositAccount | null;
  };
  node: {
    head: BlockHeader;
    chain: ChainInfo;
    blocks: Block[];
    settle_block: Block;
    account: Account;
    job: ChainJob | null;
    paid_job?: PaidJob | null;
    deposit?: ChainDeposit | null;
    validators: Validators;
  };
  poolhub: { miners: { miners: PoolMiner[] }; leaderboard: { leaderboard: LeaderboardEntry[] }; miner: Record<string, unknown> } | null;
}

export async function loadFixture(): Promise<Fixture> {
  return (await import('../../fixtures/devnet.json')).default as unknown as Fixture;
}

const clone = <T>(v: T): T => structuredClone(v);
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new DOMException('aborted', 'AbortError'));
    });
  });

export class MockApi implements Api {
  readonly kind = 'mock' as const;
  readonly config: Config;
  private submitted = new Map<string, Job>();

  constructor(readonly fixture: Fixture) {
    this.config = {
      coordinator_url: 'mock://coordinator',
      node_url: 'mock://node',
      ws_url: 'mock://ws',
      poolhub_url: fixture.poolhub ? 'mock://poolhub' : null,
      exchange_url: null,
      chain_id: fixture.node.chain.chain_id,
    };
  }

  private get f() {
    return this.fixture;
  }

  async health() {
    return clone(this.f.coordinator.health);
  }
  async models() {
    return clone(this.f.coordinator.models.models);
  }
  async jobs(state?: string) {
    const all = [...this.submitted.values(), ...this.f.coordinator.jobs.jobs];
    return clone(state ? all.filter((j) => j.state === state) : all);
  }
  async job(id: string) {
    return clone(this.submitted.get(id) ?? { ...this.f.coordinator.job, job_id: id });
  }
  async submitJob(body: Record<string, unknown>) {
    const id = String(body.job_id ?? `job_mock${Date.now().toString(16)}`);
    const job = { ...this.f.coordinator.job, job_id: id, model: String(body.model), max_price: Number(body.max_price) };
    this.submitted.set(id, job);
    return clone({ ...job, state: 'queued', miner: null, finished_at_ms: null });
  }
  async cancelJob(id: string) {
    return { ...(await this.job(id)), state: 'cancelled' };
  }
  async result(id: string) {
    return clone({ ...this.f.coordinator.result, job_id: id });
  }
  async receipt(id: string) {
    const r = clone(this.f.coordinator.receipt);
    return { ...r, job_id: id };
  }
  async explainMatch(id: string) {
    const m = clone(this.f.coordinator.match);
    m.job = await this.job(id);
    return m;
  }
  async streamJob(id: string, onEvent: (e: JobEvent) => void, signal: AbortSignal) {
    const job = await this.job(id);
    onEvent({ event: 'status', data: { ...job, state: 'running' } });
    const text = this.f.coordinator.result.output.text ?? '';
    const pieces = text.match(/\S+\s*/g) ?? [text];
    for (const [index, piece] of pieces.entries()) {
      await sleep(60, signal);
      onEvent({ event: 'token', data: { index, text: piece } });
    }
    onEvent({ event: 'receipt', data: clone(this.f.coordinator.receipt) as unknown as Record<string, unknown> });
    onEvent({ event: 'status', data: { ...job } });
  }
  async coordinatorMetrics() {
    return this.f.coordinator.metrics;
  }
  async head() {
    return clone(this.f.node.head);
  }
  async chain() {
    return clone(this.f.node.chain);
  }
  async block(ref: number | string) {
    const all = [...this.f.node.blocks, this.f.node.settle_block];
    const found = all.find((b) => String(b.height) === String(ref) || b.hash === ref);
    if (!found) throw new ApiError(`no block ${ref} in the recorded data`, 404);
    return clone(found);
  }
  async tx(hash: string) {
    const tx = this.f.node.settle_block.txs?.[0];
    if (!tx) throw new ApiError(`no tx ${hash}`, 404);
    return { ...clone(tx), hash, height: this.f.node.settle_block.height };
  }
  async txStatus(hash: string) {
    return { tx_hash: hash, status: 'committed', height: this.f.node.head.height };
  }
  async account(address: string) {
    return { ...clone(this.f.node.account), address };
  }
  async chainJob(id: string) {
    return this.f.node.job ? { ...clone(this.f.node.job), job_id: id } : null;
  }
  async paidJob(id: string) {
    return this.f.node.paid_job ? { ...clone(this.f.node.paid_job), job_id: id } : null;
  }
  async minerRecord(_address: string) {
    return null;
  }
  async chainDeposit(_id: string) {
    return clone(this.f.node.deposit ?? null);
  }
  async depositAccount() {
    return clone(this.f.coordinator.account ?? null);
  }
  async validators() {
    return clone(this.f.node.validators);
  }
  async sendTx(_tx: Tx): Promise<string> {
    return '00'.repeat(32);
  }
  subscribeChain(events: ChainEvents): () => void {
    const blocks = [...this.f.node.blocks].sort((a, b) => a.height - b.height);
    let height = this.f.node.head.height;
    let i = 0;
    events.onStatus?.('live');
    const timer = setInterval(() => {
      const b = blocks[i++ % blocks.length]!;
      height += 1;
      const { txs: _txs, ...header } = b;
      events.onBlock({ ...header, height, time_ms: Date.now() });
    }, this.f.node.chain.block_time_ms || 1000);
    return () => clearInterval(timer);
  }
  async poolMiners() {
    return this.f.poolhub ? clone(this.f.poolhub.miners.miners) : null;
  }
  async leaderboard() {
    return this.f.poolhub ? clone(this.f.poolhub.leaderboard.leaderboard) : null;
  }
  async minerDetail(_address: string) {
    return this.f.poolhub ? clone(this.f.poolhub.miner) : null;
  }
}
