/** The marketplace's offers: one row per (miner, model) from the pool hub's registry and scores. Pure. */
import type { LeaderboardEntry, MinerRecord, PoolMiner } from '../api/types';

export interface Offer {
  miner: string;
  online: boolean;
  model: string;
  kind: string;
  digest: string;
  hardware: string;
  price: number;
  score: number | null;
  reliability: number;
  ttft: number | null;
  tps: number | null;
  jobs: number;
  bond: number;
  load: string;
}

export function offersOf(miners: PoolMiner[], board: LeaderboardEntry[]): Offer[] {
  const scores = new Map(board.map((b) => [`${b.miner}/${b.model}`, b.score]));
  return miners.flatMap((m) =>
    m.models.map((model) => ({
      miner: m.miner,
      online: m.online,
      model: model.name,
      kind: model.kind,
      digest: model.digest,
      hardware: [m.gpu_name ?? 'CPU', m.vram_gb ? `${m.vram_gb} GB` : '', m.region].filter(Boolean).join(' · '),
      price: model.unit_price,
      score: scores.get(`${m.miner}/${model.name}`) ?? null,
      reliability: m.stats.reliability,
      ttft: m.stats.ttft_ms,
      tps: m.stats.tokens_per_s,
      jobs: m.stats.jobs,
      bond: m.stake,
      load: `${m.load}/${m.max_concurrency}`,
    })),
  );
}

export function auditText(r: MinerRecord | null | undefined): string {
  if (!r) return '—';
  if (r.audited === 0) return 'none yet';
  return `${r.passed} of ${r.audited}${r.failed ? ` (${r.failed} slashed)` : ''}`;
}

export type SortKey = 'score' | 'price' | 'tps' | 'reliability';

/** Best first for the chosen key (cheapest first for price); unknown values last. */
export function sortOffers(offers: Offer[], key: SortKey): Offer[] {
  const by: Record<SortKey, (a: Offer, b: Offer) => number> = {
    price: (a, b) => a.price - b.price,
    tps: (a, b) => (b.tps ?? -1) - (a.tps ?? -1),
    reliability: (a, b) => b.reliability - a.reliability,
    score: (a, b) => (b.score ?? -1) - (a.score ?? -1),
  };
  return [...offers].sort(by[key]);
}
