/** Small shared pieces: async data, amounts, hashes, status badges, errors, tables. */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { formatAitbc, shortHash } from '../lib/format';

export interface Async<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  reload: () => void;
}

/** Run `load` on mount and whenever `deps` change (and every `refreshMs`, if given). */
export function useAsync<T>(load: () => Promise<T>, deps: unknown[], refreshMs?: number): Async<T> {
  const [state, setState] = useState<{ data?: T; error?: Error; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (error: Error) => live && setState((s) => ({ data: s.data, error, loading: false })),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  useEffect(() => {
    if (!refreshMs) return;
    const t = setInterval(reload, refreshMs);
    return () => clearInterval(t);
  }, [refreshMs, reload]);
  return { ...state, reload } as Async<T>;
}

export function Amount({ value, unit = true }: { value: number | bigint | string | null | undefined; unit?: boolean }) {
  if (value == null) return <span>—</span>;
  return (
    <span class="amount" title={`${value} base units`}>
      {formatAitbc(value)}
      {unit && <span class="unit"> AITBC</span>}
    </span>
  );
}

export function Hash({ value, href, full }: { value: string | null | undefined; href?: string; full?: boolean }) {
  if (!value) return <span>—</span>;
  const text = full ? value : shortHash(value);
  return href ? (
    <a class="mono" href={href} title={value}>
      {text}
    </a>
  ) : (
    <span class="mono" title={value}>
      {text}
    </span>
  );
}

const TONE: Record<string, string> = {
  completed: 'ok', settled: 'ok', committed: 'ok', active: 'ok', online: 'ok', verified: 'ok', live: 'ok',
  running: 'busy', assigned: 'busy', queued: 'busy', pending: 'busy', open: 'busy', connecting: 'busy',
  failed: 'bad', rejected: 'bad', expired: 'bad', cancelled: 'warn', refunded: 'warn', jailed: 'bad', closed: 'warn',
  offline: 'warn', mismatch: 'bad',
};

export function Badge({ state }: { state: string }) {
  return <span class={`badge ${TONE[state] ?? ''}`}>{state}</span>;
}

export function ErrorBox({ error }: { error: Error | string | undefined | null }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {typeof error === 'string' ? error : error.message}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" aria-live="polite">
      Loading {what}…
    </p>
  );
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  const id = 'sec-' + title.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return (
    <section class="card" aria-labelledby={id}>
      <header class="card-head">
        <h2 id={id}>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

/** A table that scrolls sideways on small screens instead of breaking the layout. */
export function Table({ caption, head, children }: { caption: string; head: string[]; children: ComponentChildren }) {
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label={caption}>
      <table>
        <caption class="sr-only">{caption}</caption>
        <thead>
          <tr>
            {head.map((h) => (
              <th scope="col" key={h}>
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

let navigated = false;
addEventListener('hashchange', () => (navigated = true));

/** Focus the page's main heading when the route changes (keyboard and screen-reader users); a fresh
 * load keeps the browser's own focus order, so the first Tab reaches the skip link. */
export function useFocusHeading(key: string) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (navigated) ref.current?.focus();
  }, [key]);
  return ref;
}

export function Page({ title, children, intro }: { title: string; intro?: string; children: ComponentChildren }) {
  const ref = useFocusHeading(title);
  return (
    <>
      <h1 tabIndex={-1} ref={ref}>
        {title}
      </h1>
      {intro && <p class="intro">{intro}</p>}
      {children}
    </>
  );
}
