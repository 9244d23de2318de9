/**
 * A minimal observable store (get / set / subscribe) and the app's persisted settings.
 * Framework-free so it can be unit-tested; `useStore` binds it to Preact.
 */

export interface Store<T> {
  get(): T;
  set(next: T | ((prev: T) => T)): void;
  subscribe(listener: (value: T) => void): () => void;
}

export function createStore<T>(initial: T): Store<T> {
  let value = initial;
  const listeners = new Set<(value: T) => void>();
  return {
    get: () => value,
    set(next) {
      const resolved = typeof next === 'function' ? (next as (prev: T) => T)(value) : next;
      if (Object.is(resolved, value)) return;
      value = resolved;
      for (const l of [...listeners]) l(value);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export type DataMode = 'live' | 'mock';
export type Theme = 'auto' | 'light' | 'dark';

export interface Settings {
  mode: DataMode;
  apiKey: string;
  theme: Theme;
}

export const DEFAULT_SETTINGS: Settings = { mode: 'live', apiKey: '', theme: 'auto' };
const SETTINGS_KEY = 'aitbc.settings.v1';

export function loadSettings(storage: Pick<Storage, 'getItem'>): Settings {
  try {
    const raw = JSON.parse(storage.getItem(SETTINGS_KEY) ?? '{}') as Partial<Settings>;
    return {
      mode: raw.mode === 'mock' ? 'mock' : 'live',
      apiKey: typeof raw.apiKey === 'string' ? raw.apiKey : '',
      theme: raw.theme === 'light' || raw.theme === 'dark' ? raw.theme : 'auto',
    };
  } catch {
    return { ...DEFAULT_SETTINGS };
  }
}

/** A settings store that writes every change back to `storage`. */
export function createSettingsStore(storage: Pick<Storage, 'getItem' | 'setItem'>): Store<Settings> {
  const store = createStore(loadSettings(storage));
  store.subscribe((s) => storage.setItem(SETTINGS_KEY, JSON.stringify(s)));
  return store;
}

/** A bounded time series (oldest dropped first) for the stats charts. */
export class Series {
  readonly times: number[] = [];
  readonly values: (number | null)[] = [];

  constructor(readonly capacity: number) {}

  push(time: number, value: number | null): void {
    this.times.push(time);
    this.values.push(value);
    if (this.times.length > this.capacity) {
      this.times.shift();
      this.values.shift();
    }
  }
}

/** The rate of a monotonically increasing counter between two samples (per second); null on a reset. */
export function counterRate(prev: { t: number; v: number } | null, next: { t: number; v: number }): number | null {
  if (prev === null || next.t <= prev.t || next.v < prev.v) return null;
  return (next.v - prev.v) / ((next.t - prev.t) / 1000);
}
