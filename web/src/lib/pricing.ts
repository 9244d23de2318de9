/**
 * What a job may cost, as the CLI computes it (aitbc.client.payment / aitbc.market.matching /
 * aitbc.chain.transition): the worst case at the dearest live miner, and the escrow that
 * covers it plus the protocol fee. Pure.
 */

export const TEMPLATE_OVERHEAD_TOKENS = 64;
export const DEFAULT_DEADLINE_BLOCKS = 900;

export interface JobSizing {
  type: 'inference' | 'embedding' | string;
  inputChars: number;
  maxTokens: number;
}

export function computeMaxUnits(job: JobSizing): number {
  if (job.type === 'embedding') return job.inputChars + TEMPLATE_OVERHEAD_TOKENS;
  return job.inputChars + TEMPLATE_OVERHEAD_TOKENS + job.maxTokens;
}

export function computeDefaultMaxPrice(job: JobSizing, unitPrices: number[]): number {
  if (unitPrices.length === 0) throw new Error('no live miner serves this model, so no price can be offered');
  return Math.max(...unitPrices) * computeMaxUnits(job);
}

export function computeProtocolFee(total: number, protocolFeeBps: number): number {
  return Number((BigInt(total) * BigInt(protocolFeeBps)) / 10_000n);
}

export function computeEscrowAmount(maxPrice: number, protocolFeeBps: number): number {
  return maxPrice + computeProtocolFee(maxPrice, protocolFeeBps);
}

export function newJobId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return 'job_' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
