// Asset page: energy by bucket over a site-local date range (with the previous period for
// comparison), data completeness, KPIs, the forecast against recent actuals with its interval
// band, and the asset's models.
import { api } from "./app.js";
import { chartBox, dispose, forecastChart, labels, timeSeriesChart } from "./charts.js";
import { addDays, clear, el, facts, fmt, localMidnight, localTime } from "./dom.js";

const BUCKETS = [["15min", "15 minutes"], ["hour", "Hour"], ["day", "Day"], ["week", "Week"], ["month", "Month"]];

function daysBetween(a, b) {
  return Math.round((Date.parse(`${b}T00:00:00Z`) - Date.parse(`${a}T00:00:00Z`)) / 86400000);
}

function energyUrl(id, timeZone, from, to, bucket) {
  const start = localMidnight(from, timeZone);
  const end = localMidnight(to, timeZone);
  return `/api/v1/assets/${encodeURIComponent(id)}/energy?start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}&bucket=${bucket}`;
}

function completeness(buckets) {
  const expected = buckets.reduce((n, b) => n + (b.expected_count ?? 0), 0);
  const missing = buckets.reduce((n, b) => n + (b.missing_count ?? 0), 0);
  const gaps = buckets.filter((b) => b.energy_kwh === null).length;
  if (!expected) return `${gaps} of ${buckets.length} buckets without data`;
  return `${fmt(100 * (1 - missing / expected), 2)} % of expected intervals (${missing} missing); ${gaps} buckets without data`;
}

export async function renderAsset(main, assetId) {
  const asset = await api(`/api/v1/assets/${encodeURIComponent(assetId)}`);
  const site = await api(`/api/v1/sites/${encodeURIComponent(asset.site_id)}`);
  const tz = site.timezone;
  const latest = asset.latest.map((r) => r.ts).sort().pop();
  const lastDay = latest ? localTime(latest, tz).slice(0, 10) : localTime(new Date().toISOString(), tz).slice(0, 10);
  const to = addDays(lastDay, 1);

  const bucket = el("select", { id: "bucket", name: "bucket" }, BUCKETS.map(([v, label]) => el("option", { value: v, selected: v === "hour" }, label)));
  const fromInput = el("input", { id: "from", name: "from", type: "date", value: addDays(to, -7) });
  const toInput = el("input", { id: "to", name: "to", type: "date", value: to });
  const compare = el("input", { id: "compare", name: "compare", type: "checkbox" });
  const total = el("output", { id: "energy-total", for: "from to bucket" }, "");
  const summary = el("div", { id: "energy-summary" });
  const energyBox = chartBox(`Energy of ${asset.name} per bucket, kWh`);
  const powerBox = chartBox(`Mean and peak power of ${asset.name} per bucket, kW`);
  const kpiBox = el("div", { id: "kpis" });
  const form = el("form", { class: "controls", "aria-label": "Energy range" },
    el("label", { for: "bucket" }, "Bucket"), bucket,
    el("label", { for: "from" }, "From (site date)"), fromInput,
    el("label", { for: "to" }, "To (exclusive)"), toInput,
    el("label", { class: "check" }, compare, " Compare with the previous period"),
    el("button", { type: "submit" }, "Show"));

  const billMonth = el("input", { id: "bill-month", name: "bill-month", type: "month", value: lastDay.slice(0, 7) });
  const billBox = el("div", { id: "bill" });
  const billForm = el("form", { class: "controls", "aria-label": "Bill month" },
    el("label", { for: "bill-month" }, "Month"), billMonth, el("button", { type: "submit" }, "Show bill"));
  const skillBox = el("div", { id: "skill" });
  const eventsBox = el("div", { id: "meter-events" });
  const forecastBox = chartBox(`Forecast of ${asset.name} against recent actuals, kWh per interval`);
  const forecastNote = el("p", { class: "muted", id: "forecast-note" });
  const models = el("div", { id: "asset-models" });

  clear(main).append(
    el("p", {}, el("a", { href: "#/" }, "Overview"), " / ", site.name),
    el("h1", {}, asset.name, " ", el("span", { class: "muted" }, `${asset.kind} · ${asset.id}`)),
    facts([
      ["Site time zone", tz],
      ["Series", asset.series.map((s) => `${s.quantity} (${s.unit}${s.interval_seconds ? `, ${s.interval_seconds / 60} min` : ""})`).join(", ") || "none"],
      ["Latest reading", latest ? localTime(latest, tz) : "none"],
      ["Rated power", asset.rated_power_kw === null ? "–" : `${fmt(asset.rated_power_kw, 1)} kW`],
    ]),
    el("section", { class: "card", "aria-labelledby": "energy-title" },
      el("h2", { id: "energy-title" }, "Energy"), form,
      el("p", {}, "Total: ", total), energyBox, summary,
      el("h3", {}, "Power"), powerBox),
    el("section", { class: "card", "aria-labelledby": "events-title" }, el("h2", { id: "events-title" }, "Meter events in the range"), eventsBox),
    el("section", { class: "card", "aria-labelledby": "kpi-title" }, el("h2", { id: "kpi-title" }, "KPIs of the range"), kpiBox),
    el("section", { class: "card", "aria-labelledby": "bill-title" }, el("h2", { id: "bill-title" }, "Bill"), billForm, billBox),
    el("section", { class: "card", "aria-labelledby": "forecast-title" },
      el("h2", { id: "forecast-title" }, "Forecast against actuals"), forecastBox, forecastNote,
      el("h3", {}, "Forecast skill of issued forecasts"), skillBox),
    el("section", { class: "card", "aria-labelledby": "models-title" }, el("h2", { id: "models-title" }, "Models"), models));

  async function showEnergy() {
    const from = fromInput.value;
    const until = toInput.value;
    if (!from || !until || until <= from) { summary.textContent = "Choose a range whose end follows its start."; return; }
    const report = await api(energyUrl(asset.id, tz, from, until, bucket.value));
    const series = [{ name: `${from} – ${until}`, values: report.buckets.map((b) => b.energy_kwh) }];
    if (compare.checked) {
      // The period of the same length just before, bucket by bucket.
      const span = daysBetween(from, until);
      const before = await api(energyUrl(asset.id, tz, addDays(from, -span), from, bucket.value));
      series.push({ name: `previous ${span} days`, faded: true, values: before.buckets.map((b) => b.energy_kwh) });
    }
    total.textContent = `${fmt(report.total_energy_kwh, 2)} kWh`;
    total.dataset.kwh = String(report.total_energy_kwh);
    summary.replaceChildren(facts([
      ["Buckets", `${report.buckets.length} × ${bucket.options[bucket.selectedIndex].text.toLowerCase()} (${report.quantity})`],
      ["Completeness", completeness(report.buckets)],
      ["Peak", `${fmt(Math.max(...report.buckets.map((b) => b.peak_power_kw ?? -Infinity)), 1)} kW`],
    ]));
    eventsBox.replaceChildren(report.events && report.events.length
      ? el("ul", {}, report.events.map((e) => el("li", {}, `${e.kind} ${localTime(e.start, tz)}: ${e.reason}`)),
        report.events_total > report.events.length ? el("li", {}, `… ${report.events_total - report.events.length} more`) : null)
      : el("p", { class: "muted" }, "None: no reset, rollover, replacement, glitch or quarantined value."));
    const names = labels(report.buckets.map((b) => b.start), tz, bucket.value);
    timeSeriesChart(energyBox, { labels: names, series, unit: "kWh" });
    timeSeriesChart(powerBox, { labels: names, unit: "kW", series: [
      { name: "mean power", kind: "line", values: report.buckets.map((b) => b.mean_power_kw) },
      { name: "peak power", kind: "line", values: report.buckets.map((b) => b.peak_power_kw) },
    ] });
    // KPIs after the chart is drawn: one server process computes requests one at a time (the GIL),
    // so asking for both at once only delays the chart.
    const kpis = await api(`/api/v1/assets/${encodeURIComponent(asset.id)}/kpis?start=${encodeURIComponent(localMidnight(from, tz))}&end=${encodeURIComponent(localMidnight(until, tz))}`).catch(() => null);
    kpiBox.replaceChildren(kpis ? facts([
      ["Energy", `${fmt(kpis.energy_kwh, 2)} kWh`],
      ["Peak demand", `${fmt(kpis.peak_demand_kw, 1)} kW${kpis.peak_ts ? ` at ${localTime(kpis.peak_ts, tz)}` : ""}`],
      ["Load factor", fmt(kpis.load_factor, 3)],
      ["Base load", `${fmt(kpis.base_load_kw, 1)} kW`],
      ["Energy per m²", kpis.energy_per_m2_kwh === null ? "no floor area" : `${fmt(kpis.energy_per_m2_kwh, 2)} kWh/m²`],
      ["Energy per unit produced", kpis.energy_per_unit_kwh === null ? "no production counter" : `${fmt(kpis.energy_per_unit_kwh, 3)} kWh`],
      ["CO2", kpis.co2_kg === null ? "no carbon intensity for the site" : `${fmt(kpis.co2_kg, 1)} kg (${kpis.co2_source ?? "location-based"})`],
      ["Cost per kWh", kpis.cost_per_kwh === null ? "no tariff assigned" : `${fmt(kpis.cost_per_kwh, 4)} ${kpis.currency ?? ""}`],
      ["Completeness", `${fmt(100 * (kpis.completeness ?? 0), 1)} %`],
    ]) : el("p", { class: "muted" }, "No KPIs for this range."));
  }

  async function showForecast() {
    let forecast;
    try {
      forecast = await api(`/api/v1/assets/${encodeURIComponent(asset.id)}/forecast?horizon=PT24H&quantiles=0.1,0.9`);
    } catch (error) {
      dispose(forecastBox);
      forecastBox.hidden = true;
      forecastNote.textContent = `No forecast: ${error.message}`;
      return;
    }
    const step = forecast.interval_seconds;
    const first = forecast.points[0].ts;
    const since = new Date(Date.parse(first) - 86400000).toISOString();
    const bucketName = step === 900 ? "15min" : "hour";
    const actual = await api(`/api/v1/assets/${encodeURIComponent(asset.id)}/energy?start=${encodeURIComponent(since)}&end=${encodeURIComponent(first)}&bucket=${bucketName}`);
    const points = actual.buckets.map((b) => ({ ts: b.start, actual: b.energy_kwh, value: null, low: null, high: null }))
      .concat(forecast.points.map((p) => ({ ts: p.ts, actual: null, value: p.value, low: p.quantiles ? p.quantiles["0.1"] : null, high: p.quantiles ? p.quantiles["0.9"] : null })));
    forecastChart(forecastBox, { points, unit: "kWh", timeZone: tz, bandLabel: "80 % interval" });
    forecastNote.textContent = `Model ${forecast.algorithm}${forecast.model_version ? ` v${forecast.model_version}` : ""}, issued ${localTime(forecast.issued_at, tz)}; the band holds 80 % of outcomes (10 % and 90 % quantiles)${forecast.flatliner ? "; the last day was flat, so is the forecast" : ""}.`;
  }

  async function showBill() {
    const [y, m] = billMonth.value.split("-").map(Number);
    if (!y || !m) return;
    const first = `${y}-${String(m).padStart(2, "0")}-01`;
    const next = m === 12 ? `${y + 1}-01-01` : `${y}-${String(m + 1).padStart(2, "0")}-01`;
    const range = `start=${encodeURIComponent(localMidnight(first, tz))}&end=${encodeURIComponent(localMidnight(next, tz))}`;
    let answer;
    let whose = "this asset's tariff";
    try {
      answer = await api(`/api/v1/assets/${encodeURIComponent(asset.id)}/bill?${range}`);
    } catch (error) {
      try {
        answer = await api(`/api/v1/sites/${encodeURIComponent(site.id)}/bill?${range}`);
        whose = `the site's tariff, all of its top-level meters`;
      } catch (siteError) {
        billBox.replaceChildren(el("p", { class: "muted" }, `No bill: ${siteError.message}`));
        return;
      }
    }
    billBox.replaceChildren(...answer.bills.map((bill) => el("div", {},
      el("p", {}, `${bill.tariff_name} (${whose}), ${bill.first_day} to ${bill.last_day}; ${fmt(100 * bill.completeness.fraction, 1)} % of intervals metered`),
      el("table", {}, el("caption", {}, `Line items, ${bill.currency}`),
        el("thead", {}, el("tr", {}, ["item", "quantity", "rate", `amount (${bill.currency})`].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, bill.line_items.map((i) => el("tr", {},
          el("td", {}, i.description), el("td", { class: "num" }, i.quantity === null ? "–" : `${fmt(i.quantity, 2)} ${i.unit ?? ""}`),
          el("td", { class: "num" }, i.rate === null ? "–" : fmt(i.rate, 4)), el("td", { class: "num" }, fmt(i.amount, 2)))),
        el("tr", {}, el("th", { scope: "row", colspan: 3 }, "Total"), el("td", { class: "num" }, el("strong", {}, fmt(bill.total, 2)))))),
      bill.notes.length ? el("ul", {}, bill.notes.map((n) => el("li", { class: "muted" }, n))) : null)));
  }

  async function showSkill() {
    const skill = await api(`/api/v1/assets/${encodeURIComponent(asset.id)}/forecast-skill`).catch(() => null);
    const rows = skill ? (skill.rows || skill.table || []) : [];
    skillBox.replaceChildren(rows.length ? el("div", { class: "scroll" }, el("table", {},
      el("caption", {}, "Stored forecasts scored against actuals, by source, window and lead time"),
      el("thead", {}, el("tr", {}, Object.keys(rows[0]).map((k) => el("th", { scope: "col" }, k)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, Object.values(r).map((v) => el("td", {}, typeof v === "number" ? fmt(v, 3) : String(v ?? "–"))))))))
      : el("p", { class: "muted" }, "No issued forecast scored yet (forecasts are stored when issued on a schedule or posted)."));
  }

  async function showModels() {
    const list = (await api(`/api/v1/models?asset_id=${encodeURIComponent(asset.id)}`).catch(() => ({ models: [] }))).models;
    models.replaceChildren(list.length ? el("ul", {}, list.map((m) => el("li", {},
      `${m.algorithm} v${m.version}`, m.active ? el("strong", {}, " champion") : "",
      ` · holdout CV(RMSE) ${fmt(100 * (m.metrics.cv_rmse ?? NaN), 1)} %`, " ",
      el("a", { href: `#/models/${encodeURIComponent(asset.id)}` }, "details")))) : el("p", { class: "muted" }, "No trained model."));
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); showEnergy().catch((e) => { summary.textContent = e.message; }); });
  billForm.addEventListener("submit", (event) => { event.preventDefault(); showBill(); });
  bucket.addEventListener("change", () => form.requestSubmit());
  await showEnergy();
  showForecast();
  showModels();
  showBill();
  showSkill();
  return () => { dispose(energyBox); dispose(powerBox); dispose(forecastBox); };
}
