/**
 * View types of the responses the pages read. The generated `*.d.ts` (openapi-typescript) type
 * every path, parameter and body; where a service documents a response as a free-form object
 * these interfaces name the fields the app uses (checked against recorded responses in fixtures/).
 */

export interface Config {
  coordinator_url: string | null;
  node_url: string | null;
  ws_url: string | null;
  poolhub_url: string | null;
  exchange_url: string | null;
  chain_id: string | null;
}

export interface ModelInfo {
  name: string;
  kind: 'text' | 'embedding' | string;
  digest: string;
  miners: number;
  min_unit_price: number;
  max_unit_price: number;
}

export interface Payment {
  state: string;
  escrow_amount: number;
  deadline_height: number;
  tx_hash: string | null;
  height: number | null;
  paid_to_miner: number | null;
  protocol_fee: number | null;
  refunded: number | null;
  error: string | null;
}

export interface Job {
  job_id: string;
  type: string;
  model: string;
  state: string;
  attempts: number;
  client: string;
  miner: string | null;
  max_price: number | null;
  created_at_ms: number;
  assigned_at_ms: number | null;
  started_at_ms: number | null;
  finished_at_ms: number | null;
  expires_at_ms: number;
  error: unknown;
  payment?: Payment | null;
}

export interface Receipt {
  chain_id: string;
  job_id: string;
  miner: string;
  client: string;
  coordinator: string;
  model: string;
  model_digest: string;
  input_hash: string;
  output_hash: string;
  units: { prompt_tokens: number; completion_tokens: number; compute_ms: number };
  unit_price: number;
  total_price: number;
  started_at_ms: number;
  finished_at_ms: number;
  miner_signature: string;
  coordinator_signature: string;
}

export interface ReceiptResponse {
  job_id: string;
  receipt_hash: string;
  receipt: Receipt;
}

export interface JobResult {
  job_id: string;
  state: string;
  receipt_hash: string;
  usage: { prompt_tokens: number; completion_tokens: number; compute_ms: number };
  total_price: number;
  output: { text?: string; vectors?: unknown };
}

export interface Candidate {
  rank: number;
  miner: string;
  score: number;
  exploration: boolean;
  factors: Record<string, number>;
  reasons: string[];
}

export interface MatchExplanation {
  job: Job;
  ranking: {
    policy: string;
    candidates: Candidate[];
    excluded: { miner: string; reason: string }[];
    took_ms?: number;
  };
}

export interface MinerStats {
  reliability: number;
  ttft_ms: number | null;
  tokens_per_s: number | null;
  jobs: number;
  completed: number;
  failed: number;
  timed_out: number;
  receipt_rejected: number;
}

export interface PoolMiner {
  miner: string;
  online: boolean;
  last_seen_ms: number;
  registered_at_ms: number;
  load: number;
  max_concurrency: number;
  stake: number;
  region: string;
  gpu_name: string | null;
  vram_gb: number;
  models: { name: string; kind: string; digest: string; unit_price: number }[];
  new: boolean;
  stats: MinerStats;
}

export interface LeaderboardEntry {
  rank: number;
  miner: string;
  score: number;
  model: string;
  unit_price: number;
  online: boolean;
  stats: MinerStats;
}

export interface BlockHeader {
  chain_id: string;
  height: number;
  time_ms: number;
  prev_hash: string;
  tx_root: string;
  tx_count: number;
  state_root: string;
  proposer: string;
  hash: string;
}

export interface ChainTx {
  type: string;
  sender: string;
  nonce: number;
  fee: number;
  signature?: string;
  [field: string]: unknown;
}

export interface Block extends BlockHeader {
  txs?: ChainTx[];
}

export interface Account {
  address: string;
  balance: number;
  nonce: number;
  pending_nonce: number;
  height: number;
}

export interface ChainInfo {
  chain_id: string;
  height: number;
  block_time_ms: number;
  consensus: string;
  authorities: string[];
  params: { min_fee: number; protocol_fee_bps: number; block_time_ms: number };
}

export interface Escrow {
  job_id: string;
  client: string;
  coordinator: string;
  amount: number;
  deadline_height: number;
  opened_height: number;
  state: string;
  miner: string;
  paid_to_miner: number;
  protocol_fee: number;
  refunded: number;
  receipt_hash: string;
  closed_height: number;
}

export interface ChainJob {
  job_id: string;
  escrow: Escrow;
  events: { kind: string; tx_hash: string; height: number; event_seq: number }[];
  height: number;
}

export interface Validator {
  address: string;
  authority: boolean;
  power: number;
  bonded: number;
  self_stake: number;
  status: string;
  jailed_until: number;
}

export interface Validators {
  height: number;
  consensus: string;
  total_power: number;
  validators: Validator[];
}

export interface TxStatus {
  status: 'pending' | 'committed' | 'rejected' | 'unknown' | string;
  height?: number;
  reason?: string;
  error?: string;
}

export interface JobEvent {
  event: string;
  data: Record<string, unknown>;
}

export interface DepositAccount {
  deposit_id: string;
  client: string;
  coordinator: string;
  mode: string;
  balance: number;
  reserved: number;
  pending: number;
  available: number;
  spent: number;
  withdrawing: number;
  withdrawal_height: number | null;
  cap: { per_period: number | null; period_blocks: number | null; room: number | null };
  /** The deposit's jobs by payment state. */
  jobs: Record<string, number>;
  height: number;
}

/** A deposit job the chain paid (node `get_paid_job`). */
export interface PaidJob {
  job_id: string;
  deposit_id: string;
  miner: string;
  paid_to_miner: number;
  protocol_fee: number;
  receipt_hash: string;
  height: number;
  expires_height: number;
}

/** A deposit as the chain holds it (node `get_deposit`). */
export interface ChainDeposit {
  id: string;
  owner: string;
  coordinator: string;
  mode: string;
  balance: number;
  cap_per_period: number;
  period_blocks: number;
  spent_total: number;
  jobs_paid: number;
  withdrawal_amount: number;
  withdrawal_height: number;
}

/** A miner's standing on chain: its bond and the audits of its jobs (node `get_miner_bond`, `get_audits`). */
export interface MinerRecord {
  bond: number | null;
  eligible: boolean;
  audited: number;
  passed: number;
  failed: number;
}
