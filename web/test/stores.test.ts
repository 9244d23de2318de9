import { describe, expect, it, vi } from 'vitest';
import { SseParser } from '../src/lib/sse';
import { Series, counterRate, createSettingsStore, createStore, loadSettings } from '../src/lib/store';

class MemoryStorage {
  data = new Map<string, string>();
  getItem = (k: string) => this.data.get(k) ?? null;
  setItem = (k: string, v: string) => void this.data.set(k, v);
}

describe('store', () => {
  it('notifies subscribers of changes only', () => {
    const store = createStore(1);
    const seen: number[] = [];
    const off = store.subscribe((v) => seen.push(v));
    store.set(2);
    store.set(2);
    store.set((v) => v + 1);
    off();
    store.set(10);
    expect(seen).toEqual([2, 3]);
    expect(store.get()).toBe(10);
  });

  it('persists settings and ignores junk', () => {
    const storage = new MemoryStorage();
    const settings = createSettingsStore(storage);
    expect(settings.get()).toEqual({ mode: 'live', apiKey: '', theme: 'auto' });
    settings.set({ ...settings.get(), mode: 'mock', theme: 'dark', apiKey: 'k' });
    expect(loadSettings(storage)).toEqual({ mode: 'mock', apiKey: 'k', theme: 'dark' });
    storage.setItem('aitbc.settings.v1', '{"mode":"weird","theme":5,"apiKey":[]}');
    expect(loadSettings(storage)).toEqual({ mode: 'live', apiKey: '', theme: 'auto' });
    storage.setItem('aitbc.settings.v1', 'not json');
    expect(loadSettings(storage).mode).toBe('live');
  });

  it('keeps a bounded series and computes counter rates', () => {
    const s = new Series(3);
    for (let i = 0; i < 5; i++) s.push(i, i * 10);
    expect(s.times).toEqual([2, 3, 4]);
    expect(s.values).toEqual([20, 30, 40]);
    expect(counterRate({ t: 0, v: 10 }, { t: 2000, v: 30 })).toBe(10);
    expect(counterRate(null, { t: 1, v: 1 })).toBeNull();
    expect(counterRate({ t: 0, v: 50 }, { t: 1000, v: 3 })).toBeNull(); // counter reset
  });
});

describe('SSE parser', () => {
  const stream = 'id: 1\nevent: status\ndata: {"state":"running"}\n\nid: 2\nevent: token\ndata: {"text":"Hi"}\n\n: keepalive\n\n';

  it('parses events however the stream is split', () => {
    const whole = new SseParser().push(stream);
    expect(whole).toEqual([
      { event: 'status', data: '{"state":"running"}', id: '1' },
      { event: 'token', data: '{"text":"Hi"}', id: '2' },
    ]);
    for (let cut = 1; cut < stream.length; cut++) {
      const p = new SseParser();
      expect([...p.push(stream.slice(0, cut)), ...p.push(stream.slice(cut))]).toEqual(whole);
    }
  });

  it('handles CRLF, multi-line data and default event names', () => {
    const p = new SseParser();
    const got = [...p.push('data: a\r'), ...p.push('\ndata: b\r\n\r\n')];
    expect(got).toEqual([{ event: 'message', data: 'a\nb', id: undefined }]);
  });

  it('emits nothing for an incomplete event', () => {
    const spy = vi.fn();
    new SseParser().push('event: token\ndata: x\n').forEach(spy);
    expect(spy).not.toHaveBeenCalled();
  });
});
