/** The shell: navigation, live/mock toggle, theme, and a hash router over the pages. */
import { useEffect, useState } from 'preact/hooks';
import type { Config } from './api/types';
import { AccountPage } from './pages/account';
import { ExchangePage } from './pages/exchange';
import { ExplorerPage } from './pages/explorer';
import { JobsPage } from './pages/jobs';
import { MarketPage } from './pages/market';
import { StatsPage } from './pages/stats';
import { SubmitPage } from './pages/submit';
import { apiStore, mockInfo, selectApi, settings, unlockedKey, useStore } from './state';
import type { Theme } from './lib/store';
import { shortHash } from './lib/format';

const PAGES = [
  { path: 'market', label: 'Marketplace' },
  { path: 'submit', label: 'Submit a job' },
  { path: 'jobs', label: 'My jobs' },
  { path: 'explorer', label: 'Explorer' },
  { path: 'stats', label: 'Stats' },
  { path: 'exchange', label: 'Exchange' },
  { path: 'account', label: 'Account' },
] as const;

function useRoute(): string[] {
  const read = () => (location.hash.replace(/^#\/?/, '') || 'market').split('/').map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function applyTheme(theme: Theme) {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

export function App({ config }: { config: Config }) {
  const route = useRoute();
  const s = useStore(settings);
  const api = useStore(apiStore);
  const mock = useStore(mockInfo);
  const key = useStore(unlockedKey);

  useEffect(() => applyTheme(s.theme), [s.theme]);
  useEffect(() => {
    void selectApi(config);
  }, [s.mode, config]);

  const [page, ...rest] = route;
  let body;
  if (!api) body = <p class="muted">Connecting…</p>;
  else if (page === 'submit') body = <SubmitPage />;
  else if (page === 'jobs') body = <JobsPage jobId={rest[0]} />;
  else if (page === 'explorer') body = <ExplorerPage route={rest} />;
  else if (page === 'stats') body = <StatsPage />;
  else if (page === 'account') body = <AccountPage />;
  else if (page === 'exchange') body = <ExchangePage />;
  else body = <MarketPage />;

  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('main')?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/market" aria-label="AITBC marketplace home">
          AITBC
        </a>
        <nav aria-label="Main">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={`#/${p.path}`} aria-current={page === p.path || (!page && p.path === 'market') ? 'page' : undefined}>
                  {p.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="controls">
          <span class="key-chip" title={key ? key.address : 'No key unlocked'}>
            {key ? `Key ${shortHash(key.address, 10, 4)} unlocked` : 'Key locked'}
          </span>
          <label class="toggle">
            <input
              type="checkbox"
              role="switch"
              checked={s.mode === 'mock'}
              onChange={(e) => settings.set({ ...s, mode: (e.target as HTMLInputElement).checked ? 'mock' : 'live' })}
            />
            <span>Mock data</span>
          </label>
          <label>
            <span class="sr-only">Theme</span>
            <select
              value={s.theme}
              aria-label="Theme"
              onChange={(e) => settings.set({ ...s, theme: (e.target as HTMLSelectElement).value as Theme })}
            >
              <option value="auto">Auto theme</option>
              <option value="light">Light</option>
              <option value="dark">Dark</option>
            </select>
          </label>
        </div>
      </header>
      {mock && (
        <div class="mock-banner" role="status" data-testid="mock-banner">
          <strong>MOCK DATA</strong> — recorded responses of a real devnet ({mock.source}), recorded{' '}
          {new Date(mock.recorded_at).toLocaleString()}. Nothing you do here reaches a service.
        </div>
      )}
      <main id="main" tabIndex={-1}>
        {body}
      </main>
      <footer class="foot">
        <span>
          {api?.kind === 'live' ? 'Live' : 'Mock'} · chain {api?.config.chain_id ?? config.chain_id ?? '?'} · coordinator{' '}
          {api?.config.coordinator_url ?? 'not configured'}
        </span>
      </footer>
    </>
  );
}
