// Charts with Apache ECharts (vendored, see vendor/ECHARTS-LICENSE): time axes labelled in the
// site's time zone, the unit on every value axis, and missing data drawn as gaps (null), never 0.
import { el, fmt, localTime } from "./dom.js";

const charts = new Set();
window.addEventListener("resize", () => charts.forEach((chart) => chart.resize()));

const COLORS = ["#1f5fa8", "#b35900", "#2e7d32", "#6a3d9a", "#8c2d04"];

/**
 * Category labels of interval starts in the site's zone: dates for day and longer buckets, else
 * date and time. The zone's offset is looked up once per UTC day (twice where it changes that day,
 * then per point), since formatting each of a year's 35,040 quarter hours through Intl takes seconds.
 */
export function labels(starts, timeZone, bucket) {
  const offsetAt = (ms) => Date.parse(`${localTime(new Date(ms).toISOString(), timeZone).replace(" ", "T")}:00Z`) - Math.floor(ms / 60000) * 60000;
  const dayOffsets = new Map();
  const out = new Array(starts.length);
  for (let i = 0; i < starts.length; i += 1) {
    const ms = Date.parse(starts[i]);
    const day = Math.floor(ms / 86400000);
    if (!dayOffsets.has(day)) {
      const first = offsetAt(day * 86400000);
      const last = offsetAt(day * 86400000 + 86399000);
      dayOffsets.set(day, first === last ? first : null);
    }
    const offset = dayOffsets.get(day) ?? offsetAt(ms);
    const shown = new Date(ms + offset).toISOString().slice(0, 16).replace("T", " ");
    out[i] = bucket === "month" ? shown.slice(0, 7) : bucket === "day" || bucket === "week" ? shown.slice(0, 10) : shown;
  }
  return out;
}

function axisTooltip(unit, rows) {
  return {
    trigger: "axis",
    formatter: (items) => rows ? rows(items[0].dataIndex)
      : [items[0].axisValue, ...items.map((item) => `${item.marker} ${item.seriesName}: ${fmt(item.value, 2)} ${unit}`)].join("<br>"),
  };
}

/** A chart element with its accessible label; ``render`` draws into it once it is in the page. */
export function chartBox(label) {
  return el("div", { class: "chart", role: "img", "aria-label": label });
}

function mount(box, option) {
  const chart = echarts.init(box, null, { renderer: "canvas" });
  chart.setOption({ aria: { enabled: true }, animation: false, color: COLORS, ...option });
  charts.add(chart);
  return chart;
}

export function dispose(box) {
  const chart = echarts.getInstanceByDom(box);
  if (chart) { charts.delete(chart); chart.dispose(); }
}

/**
 * Bars (or lines) over buckets: ``labels`` are the buckets' local starts (see :func:`labels`),
 * ``series`` a list of {name, values: [number|null], kind: "bar"|"line", faded}; ``unit`` labels
 * the value axis and the tooltip.
 */
export function timeSeriesChart(box, { labels: names, series, unit }) {
  dispose(box);
  return mount(box, {
    grid: { left: 64, right: 16, top: 36, bottom: 56 },
    legend: { top: 0 },
    tooltip: axisTooltip(unit),
    dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 8 }],
    xAxis: { type: "category", data: names, axisLabel: { hideOverlap: true } },
    yAxis: { type: "value", name: unit, nameLocation: "end" },
    series: series.map((s) => ({
      name: s.name,
      type: s.kind || "bar",
      data: s.values,
      connectNulls: false,
      showSymbol: false,
      large: s.values.length > 2000,
      sampling: s.kind === "line" ? "lttb" : undefined,
      barMaxWidth: 24,
      itemStyle: s.faded ? { opacity: 0.45 } : undefined,
    })),
  });
}

/**
 * Forecast against actuals: the point forecast, the actuals and the interval between ``low`` and
 * ``high`` as a band (a stacked area whose lower edge is transparent). ``points`` carry ``ts``.
 */
export function forecastChart(box, { points, unit, timeZone, bandLabel }) {
  dispose(box);
  const at = (key) => points.map((p) => p[key]);
  const width = points.map((p) => (p.high === null || p.low === null ? null : p.high - p.low));
  const rows = (index) => {
    const p = points[index];
    return [localTime(p.ts, timeZone), `forecast: ${fmt(p.value, 2)} ${unit}`,
      `${bandLabel}: ${fmt(p.low, 2)} – ${fmt(p.high, 2)} ${unit}`, `actual: ${fmt(p.actual, 2)} ${unit}`].join("<br>");
  };
  return mount(box, {
    grid: { left: 64, right: 16, top: 36, bottom: 40 },
    legend: { top: 0, data: ["actual", "forecast", bandLabel] },
    tooltip: axisTooltip(unit, rows),
    xAxis: { type: "category", data: labels(points.map((p) => p.ts), timeZone, "hour"), axisLabel: { hideOverlap: true } },
    yAxis: { type: "value", name: unit },
    series: [
      { name: "band-base", type: "line", data: at("low"), stack: "band", lineStyle: { opacity: 0 }, symbol: "none", silent: true },
      { name: bandLabel, type: "line", data: width, stack: "band", lineStyle: { opacity: 0 }, symbol: "none", areaStyle: { color: "rgba(31,95,168,0.18)" }, silent: true },
      { name: "forecast", type: "line", data: at("value"), showSymbol: false, connectNulls: false },
      { name: "actual", type: "line", data: at("actual"), showSymbol: false, connectNulls: false, color: "#b35900" },
    ],
  });
}
