/** The app's shared state: settings (persisted), the unlocked key (memory only), the API in use. */
import { useEffect, useState } from 'preact/hooks';
import { type Api, LiveApi } from './api/client';
import type { Config } from './api/types';
import type { KeyPair } from './lib/signer';
import { type Store, createSettingsStore, createStore } from './lib/store';

export const settings = createSettingsStore(localStorage);
/** The decrypted key, while unlocked; never persisted, never sent. */
export const unlockedKey = createStore<KeyPair | null>(null);
export const apiStore = createStore<Api | null>(null);
export const mockInfo = createStore<{ recorded_at: string; source: string } | null>(null);

export function useStore<T>(store: Store<T>): T {
  const [value, setValue] = useState(store.get());
  useEffect(() => {
    setValue(store.get());
    return store.subscribe(setValue);
  }, [store]);
  return value;
}

export function useApi(): Api {
  const api = useStore(apiStore);
  if (!api) throw new Error('the API is not ready');
  return api;
}

export async function selectApi(config: Config): Promise<void> {
  const mode = settings.get().mode;
  if (mode === 'mock') {
    const { MockApi, loadFixture } = await import('./api/mock');
    const fixture = await loadFixture();
    mockInfo.set({ recorded_at: fixture.recorded_at, source: fixture.source });
    apiStore.set(new MockApi(fixture));
  } else {
    mockInfo.set(null);
    apiStore.set(new LiveApi(config, () => settings.get().apiKey));
  }
}
