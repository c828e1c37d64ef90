import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { VersionMarker } from "../model/versions";

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
  markers = NO_MARKERS,
}: {
  title: string;
  series: ChartSeries[];
  data: (number | null)[][];
  format: (value: number) => string;
  testId?: string;
  /** Config versions applied within the chart's window: drawn as labelled vertical lines. */
  markers?: VersionMarker[];
}) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const formatRef = useRef(format);
  const markersRef = useRef(markers);
  useEffect(() => {
    formatRef.current = format;
  });
  useEffect(() => {
    markersRef.current = markers;
    chart.current?.redraw(false, false);
  }, [markers]);

  useEffect(() => {
    if (!box.current) return;
    const options: uPlot.Options = {
      width: box.current.clientWidth || 420,
      height: 180,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{}, { values: (_u, values) => values.map((value) => formatRef.current(value)), size: 64 }],
      hooks: { draw: [(u: uPlot) => drawMarkers(u, markersRef.current)] },
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
    <figure
      className="chart"
      data-testid={testId}
      data-points={data[0]?.length ?? 0}
      data-last={last ?? ""}
      data-markers={markers.length}
    >
      <figcaption>
        {title}
        {markers.length > 0 && (
          <span className="chart-markers">
            {" "}
            · config {markers.length === 1 ? "change" : "changes"}:{" "}
            {markers.map((marker) => `${marker.label} at ${new Date(marker.t * 1000).toLocaleTimeString()}`).join(", ")}
          </span>
        )}
      </figcaption>
      <div ref={box} />
    </figure>
  );
}

const NO_MARKERS: VersionMarker[] = [];

/** Dashed vertical lines at each marker's time, labelled with the version, inside the plotting area. */
function drawMarkers(u: uPlot, markers: VersionMarker[]): void {
  if (!markers.length) return;
  const { ctx } = u;
  const { left, top, width, height } = u.bbox;
  const ratio = window.devicePixelRatio || 1;
  ctx.save();
  ctx.lineWidth = ratio;
  ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  for (const marker of markers) {
    const x = u.valToPos(marker.t, "x", true);
    if (!Number.isFinite(x) || x < left || x > left + width) continue;
    const colour = marker.emergency ? "#d55e00" : "#334e68";
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.setLineDash([4 * ratio, 3 * ratio]);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillText(marker.label, x + 3 * ratio, top + 2 * ratio);
  }
  ctx.restore();
}
