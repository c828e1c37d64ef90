import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  colour: string;
  dash?: number[];
}

/** A time-series chart (uPlot: canvas, cheap to update every second). `data[0]` is unix seconds. */
export function LiveChart({
  title,
  series,
  data,
  format,
  testId,
}: {
  title: string;
  series: ChartSeries[];
  data: (number | null)[][];
  format: (value: number) => string;
  testId?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const formatRef = useRef(format);
  useEffect(() => {
    formatRef.current = format;
  });

  useEffect(() => {
    if (!box.current) return;
    const options: uPlot.Options = {
      width: box.current.clientWidth || 420,
      height: 180,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{}, { values: (_u, values) => values.map((value) => formatRef.current(value)), size: 64 }],
      series: [
        {},
        ...series.map((entry) => ({
          label: entry.label,
          stroke: entry.colour,
          width: 2,
          dash: entry.dash,
          spanGaps: false,
          value: (_u: uPlot, value: number | null) => (value === null ? "—" : formatRef.current(value)),
        })),
      ],
    };
    const instance = new uPlot(options, data as uPlot.AlignedData, box.current);
    chart.current = instance;
    const resize = new ResizeObserver(() => {
      if (box.current) instance.setSize({ width: box.current.clientWidth, height: 180 });
    });
    resize.observe(box.current);
    return () => {
      resize.disconnect();
      instance.destroy();
      chart.current = null;
    };
    // Series are fixed per chart; data flows in through the effect below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    chart.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  const last = data[1]?.length ? data[1][data[1].length - 1] : null;
  return (
    <figure className="chart" data-testid={testId} data-points={data[0]?.length ?? 0} data-last={last ?? ""}>
      <figcaption>{title}</figcaption>
      <div ref={box} />
    </figure>
  );
}
