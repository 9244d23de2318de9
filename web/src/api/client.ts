/**
 * One interface to the platform for every page, with two implementations: `LiveApi` (the
 * services, through clients typed by the generated OpenAPI paths) and `MockApi` (recorded
 * responses from a real devnet, see fixtures/). The pages never know which one they have.
 */
import createClient from 'openapi-fetch';
import type { paths as CoordinatorPaths } from './coordinator';
import type { paths as NodePaths } from './node';
import type { paths as PoolhubPaths } from './poolhub';
import { readSse } from '../lib/sse';
import type { Tx } from '../lib/tx';
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
  MinerRecord,
  JobEvent,
  JobResult,
  LeaderboardEntry,
  MatchExplanation,
  ModelInfo,
  PaidJob,
  PoolMiner,
  ReceiptResponse,
  TxStatus,
  Validators,
} from './types';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly reason?: string,
  ) {
    super(message);
  }
}

export interface ChainEvents {
  onBlock(header: BlockHeader): void;
  onTxs?(txs: Record<string, unknown>[]): void;
  onStatus?(status: 'connecting' | 'live' | 'closed'): void;
}

export interface Api {
  readonly kind: 'live' | 'mock';
  readonly config: Config;
  // coordinator
  health(): Promise<{ coordinator: string; chain_id: string; miners_online: number; payments: string }>;
  models(): Promise<ModelInfo[]>;
  jobs(state?: string): Promise<Job[]>;
  job(id: string): Promise<Job>;
  submitJob(body: Record<string, unknown>): Promise<Job>;
  cancelJob(id: string): Promise<Job>;
  result(id: string): Promise<JobResult>;
  receipt(id: string): Promise<ReceiptResponse>;
  explainMatch(id: string): Promise<MatchExplanation>;
  streamJob(id: string, onEvent: (e: JobEvent) => void, signal: AbortSignal): Promise<void>;
  coordinatorMetrics(): Promise<string>;
  /** The API key's deposit as the coordinator counts it; null when the key has none. */
  depositAccount(): Promise<DepositAccount | null>;
  // node
  head(): Promise<BlockHeader>;
  chain(): Promise<ChainInfo>;
  block(ref: number | string): Promise<Block>;
  tx(hash: string): Promise<Record<string, unknown>>;
  txStatus(hash: string): Promise<TxStatus>;
  account(address: string): Promise<Account>;
  chainJob(id: string): Promise<ChainJob | null>;
  validators(): Promise<Validators>;
  /** The chain's payment record of a deposit-paid job; null until settled. */
  paidJob(id: string): Promise<PaidJob | null>;
  /** A deposit as the chain holds it (balance, pending withdrawal). */
  chainDeposit(id: string): Promise<ChainDeposit | null>;
  /** A miner's bond and audit record on chain (null where the node has no audit module). */
  minerRecord(address: string): Promise<MinerRecord | null>;
  sendTx(tx: Tx): Promise<string>;
  subscribeChain(events: ChainEvents): () => void;
  // pool hub
  poolMiners(): Promise<PoolMiner[] | null>;
  leaderboard(): Promise<LeaderboardEntry[] | null>;
  minerDetail(address: string): Promise<Record<string, unknown> | null>;
}

type Problem = { error?: { message?: string; reason?: string } | string; detail?: unknown };

function problem(status: number, body: unknown, fallback: string): ApiError {
  const p = (body ?? {}) as Problem;
  if (typeof p.error === 'object' && p.error) return new ApiError(p.error.message ?? fallback, status, p.error.reason);
  if (typeof p.error === 'string') return new ApiError(p.error, status);
  return new ApiError(`${fallback} (HTTP ${status})`, status);
}

async function unwrap<T>(call: Promise<{ data?: unknown; error?: unknown; response: Response }>, what: string): Promise<T> {
  let r;
  try {
    r = await call;
  } catch (e) {
    throw new ApiError(`${what}: the service cannot be reached (${(e as Error).message})`, 0);
  }
  if (!r.response.ok) throw problem(r.response.status, r.error, what);
  return r.data as T;
}

function need(url: string | null, name: string): string {
  if (!url) throw new ApiError(`no ${name} configured (see /config.json)`, 0);
  return url.replace(/\/$/, '');
}

export class LiveApi implements Api {
  readonly kind = 'live' as const;
  private readonly coordinator;
  private readonly node;
  private readonly poolhub;

  constructor(
    readonly config: Config,
    private readonly apiKey: () => string,
  ) {
    this.coordinator = createClient<CoordinatorPaths>({ baseUrl: config.coordinator_url?.replace(/\/$/, '') ?? '' });
    this.node = createClient<NodePaths>({ baseUrl: config.node_url?.replace(/\/$/, '') ?? '' });
    this.poolhub = createClient<PoolhubPaths>({ baseUrl: config.poolhub_url?.replace(/\/$/, '') ?? '' });
  }

  private get auth() {
    return { 'X-Api-Key': this.apiKey() };
  }

  private get c() {
    need(this.config.coordinator_url, 'coordinator');
    return this.coordinator;
  }

  private get n() {
    need(this.config.node_url, 'node');
    return this.node;
  }

  health() {
    return unwrap<Awaited<ReturnType<Api['health']>>>(this.c.GET('/healthz'), 'coordinator health');
  }

  async models() {
    return (await unwrap<{ models: ModelInfo[] }>(this.c.GET('/api/v1/models'), 'models')).models;
  }

  async jobs(state?: string) {
    const query = state ? { state: state as never, limit: 100 } : { limit: 100 };
    const r = await unwrap<{ jobs: Job[] }>(this.c.GET('/api/v1/jobs', { params: { query }, headers: this.auth }), 'jobs');
    return r.jobs;
  }

  job(id: string) {
    return unwrap<Job>(this.c.GET('/api/v1/jobs/{job_id}', { params: { path: { job_id: id } }, headers: this.auth }), 'job');
  }

  submitJob(body: Record<string, unknown>) {
    return unwrap<Job>(this.c.POST('/api/v1/jobs', { body: body as never, headers: this.auth }), 'submit job');
  }

  cancelJob(id: string) {
    return unwrap<Job>(
      this.c.POST('/api/v1/jobs/{job_id}/cancel', { params: { path: { job_id: id } }, headers: this.auth }),
      'cancel job',
    );
  }

  result(id: string) {
    return unwrap<JobResult>(
      this.c.GET('/api/v1/jobs/{job_id}/result', { params: { path: { job_id: id } }, headers: this.auth }),
      'result',
    );
  }

  receipt(id: string) {
    return unwrap<ReceiptResponse>(
      this.c.GET('/api/v1/jobs/{job_id}/receipt', { params: { path: { job_id: id } }, headers: this.auth }),
      'receipt',
    );
  }

  explainMatch(id: string) {
    return unwrap<MatchExplanation>(
      this.c.GET('/api/v1/jobs/{job_id}/match', { params: { path: { job_id: id } }, headers: this.auth }),
      'match explanation',
    );
  }

  async streamJob(id: string, onEvent: (e: JobEvent) => void, signal: AbortSignal) {
    const base = need(this.config.coordinator_url, 'coordinator');
    const response = await fetch(`${base}/api/v1/jobs/${encodeURIComponent(id)}/events`, { headers: this.auth, signal });
    if (!response.ok || !response.body) throw problem(response.status, await response.json().catch(() => null), 'events');
    await readSse(response.body, (e) => onEvent({ event: e.event, data: JSON.parse(e.data) as Record<string, unknown> }));
  }

  async coordinatorMetrics() {
    const response = await fetch(`${need(this.config.coordinator_url, 'coordinator')}/metrics`);
    if (!response.ok) throw new ApiError('coordinator metrics', response.status);
    return response.text();
  }

  async depositAccount() {
    try {
      return await unwrap<DepositAccount>(this.c.GET('/api/v1/account', { headers: this.auth }), 'account');
    } catch (e) {
      if (e instanceof ApiError && e.status === 402) return null;
      throw e;
    }
  }

  private async rpc<T>(method: string, params: unknown[]): Promise<T> {
    const base = need(this.config.node_url, 'node');
    let response: Response;
    try {
      response = await fetch(base + '/', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', method, params, id: 1 }),
      });
    } catch (e) {
      throw new ApiError(`${method}: the node cannot be reached (${(e as Error).message})`, 0);
    }
    const reply = (await response.json()) as { result?: T; error?: { code: number; message: string } };
    if (reply.error || reply.result === undefined) {
      throw new ApiError(reply.error?.message ?? `${method} failed`, response.status, reply.error?.code === -32004 ? 'not_found' : undefined);
    }
    return reply.result;
  }

  async minerRecord(address: string): Promise<MinerRecord | null> {
    try {
      const [bond, audits] = await Promise.all([
        this.rpc<{ bond: { amount: number } | null; eligible: boolean }>('get_miner_bond', [address]),
        this.rpc<{ audits: { job: { miner: string }; status: string }[] }>('get_audits', [null, address, 100]),
      ]);
      const own = audits.audits.filter((a) => a.job.miner === address && a.status !== 'pending');
      return {
        bond: bond.bond?.amount ?? null,
        eligible: bond.eligible,
        audited: own.length,
        passed: own.filter((a) => a.status === 'passed').length,
        failed: own.filter((a) => a.status === 'miner_slashed').length,
      };
    } catch (e) {
      if (e instanceof ApiError) return null; // a node without the audit methods
      throw e;
    }
  }

  async chainDeposit(id: string) {
    try {
      return (await this.rpc<{ deposit: ChainDeposit }>('get_deposit', [id])).deposit;
    } catch (e) {
      if (e instanceof ApiError && e.reason === 'not_found') return null;
      throw e;
    }
  }

  async paidJob(id: string) {
    return (await this.rpc<{ paid: PaidJob | null }>('get_paid_job', [id])).paid;
  }

  head() {
    return unwrap<BlockHeader>(this.n.GET('/v1/head'), 'head');
  }

  chain() {
    return unwrap<ChainInfo>(this.n.GET('/v1/chain'), 'chain');
  }

  block(ref: number | string) {
    return unwrap<Block>(this.n.GET('/v1/blocks/{ref}', { params: { path: { ref: String(ref) } } }), 'block');
  }

  tx(hash: string) {
    return unwrap<Record<string, unknown>>(this.n.GET('/v1/txs/{tx_hash}', { params: { path: { tx_hash: hash } } }), 'tx');
  }

  txStatus(hash: string) {
    return unwrap<TxStatus>(
      this.n.GET('/v1/txs/{tx_hash}/status', { params: { path: { tx_hash: hash } } }),
      'tx status',
    );
  }

  account(address: string) {
    return unwrap<Account>(this.n.GET('/v1/accounts/{address}', { params: { path: { address } } }), 'account');
  }

  async chainJob(id: string) {
    // JSON-RPC, whose "not found" is an answer (-32004), not an HTTP 404 the browser logs as an error
    try {
      return await this.rpc<ChainJob>('get_job', [id]);
    } catch (e) {
      if (e instanceof ApiError && e.reason === 'not_found') return null;
      throw e;
    }
  }

  validators() {
    return this.rpc<Validators>('get_validators', []);
  }

  async sendTx(tx: Tx) {
    const r = await unwrap<{ tx_hash: string }>(this.n.POST('/v1/txs', { body: tx as never }), 'send tx');
    return r.tx_hash;
  }

  subscribeChain(events: ChainEvents): () => void {
    let closed = false;
    let socket: WebSocket | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const connect = () => {
      if (closed || !this.config.ws_url) return;
      events.onStatus?.('connecting');
      socket = new WebSocket(this.config.ws_url);
      socket.binaryType = 'arraybuffer'; // the node sends its JSON in binary frames
      socket.onopen = () => {
        socket?.send(JSON.stringify({ method: 'subscribe', params: ['new_blocks', 'new_txs'], id: 1 }));
        events.onStatus?.('live');
      };
      socket.onmessage = (m) => {
        const text = typeof m.data === 'string' ? m.data : new TextDecoder().decode(m.data as ArrayBuffer);
        const msg = JSON.parse(text) as { method?: string; params?: unknown };
        if (msg.method === 'new_blocks') events.onBlock(msg.params as BlockHeader);
        else if (msg.method === 'new_txs') events.onTxs?.((msg.params as { txs: Record<string, unknown>[] }).txs);
      };
      socket.onclose = () => {
        events.onStatus?.('closed');
        if (!closed) retry = setTimeout(connect, 2000);
      };
    };
    connect();
    return () => {
      closed = true;
      clearTimeout(retry);
      socket?.close();
    };
  }

  async poolMiners() {
    if (!this.config.poolhub_url) return null;
    return (await unwrap<{ miners: PoolMiner[] }>(this.poolhub.GET('/v1/miners', { params: { query: { limit: 500 } } }), 'miners')).miners;
  }

  async leaderboard() {
    if (!this.config.poolhub_url) return null;
    const r = await unwrap<{ leaderboard: LeaderboardEntry[] }>(
      this.poolhub.GET('/v1/leaderboard', { params: { query: { limit: 100 } } }),
      'leaderboard',
    );
    return r.leaderboard;
  }

  async minerDetail(address: string) {
    if (!this.config.poolhub_url) return null;
    return unwrap<Record<string, unknown>>(
      this.poolhub.GET('/v1/miners/{address}', { params: { path: { address } } }),
      'miner',
    );
  }
}
