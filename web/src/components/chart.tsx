/** A time-series chart (uPlot, loaded on first use so it stays out of the first page load). */
import { useEffect, useRef } from 'preact/hooks';
import type uPlot from 'uplot';

export interface Line {
  label: string;
  values: (number | null)[];
}

export function Chart({ title, unit, times, lines }: { title: string; unit: string; times: number[]; lines: Line[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = [times.map((t) => t / 1000), ...lines.map((l) => l.values)] as uPlot.AlignedData;

  useEffect(() => {
    let gone = false;
    void (async () => {
      const [{ default: UPlot }] = await Promise.all([import('uplot'), import('uplot/dist/uPlot.min.css')]);
      if (gone || !box.current) return;
      const css = getComputedStyle(document.documentElement);
      const colors = [css.getPropertyValue('--accent').trim() || '#2563eb', css.getPropertyValue('--accent2').trim() || '#d97706'];
      const fg = css.getPropertyValue('--fg').trim() || '#111';
      plot.current = new UPlot(
        {
          width: Math.max(260, box.current.clientWidth),
          height: 180,
          series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: colors[i % colors.length], width: 2, spanGaps: true }))],
          axes: [
            { stroke: fg, grid: { stroke: 'rgba(128,128,128,0.2)' } },
            { stroke: fg, grid: { stroke: 'rgba(128,128,128,0.2)' }, size: 60 },
          ],
          legend: { show: true },
        },
        data,
        box.current,
      );
    })();
    const onResize = () => plot.current && box.current && plot.current.setSize({ width: Math.max(260, box.current.clientWidth), height: 180 });
    addEventListener('resize', onResize);
    return () => {
      gone = true;
      removeEventListener('resize', onResize);
      plot.current?.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [lines.length]);

  useEffect(() => {
    plot.current?.setData(data);
  });

  const last = lines.map((l) => {
    const v = [...l.values].reverse().find((x) => x != null);
    return `${l.label}: ${v == null ? '—' : `${Number(v.toFixed(2))} ${unit}`}`;
  });
  return (
    <figure class="chart">
      <figcaption>
        <strong>{title}</strong> <span class="muted">now {last.join(', ')}</span>
      </figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${last.join(', ')}`} />
    </figure>
  );
}
