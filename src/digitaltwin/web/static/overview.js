// Overview: each site with its asset tree (metering hierarchy and unmetered remainders), each
// asset's live state (updated by its event stream), and this month's energy, peak and CO2 against last month.
import { api } from "./app.js";
import { clear, el, facts, fmt, localMidnight, localTime, today } from "./dom.js";
import { follow } from "./live.js";

//: Live streams opened at most on one overview. Each holds one of the six connections a browser
//: keeps per host over HTTP/1.1; the page's API calls need the others.
const MAX_STREAMS = 2;

function monthRange(timeZone, back = 0, day = null) {
  const now = day || today(timeZone);
  let [y, m] = now.split("-").map(Number);
  m -= back;
  while (m < 1) { m += 12; y -= 1; }
  const first = `${y}-${String(m).padStart(2, "0")}-01`;
  const nextMonth = m === 12 ? `${y + 1}-01-01` : `${y}-${String(m + 1).padStart(2, "0")}-01`;
  return { label: first.slice(0, 7), start: localMidnight(first, timeZone), end: localMidnight(nextMonth, timeZone) };
}

function change(current, previous) {
  if (current === null || previous === null || !previous) return "";
  const pct = (100 * (current - previous)) / previous;
  return ` (${pct >= 0 ? "+" : ""}${fmt(pct, 1)} % vs last month)`;
}

function latestDay(site, assets, states) {
  // The local day of the newest reading of the site's root meters (whose energy the site KPIs sum).
  const roots = new Set(assets.filter((a) => !a.parent_id).map((a) => a.id));
  const newest = [...states.values()].filter((s) => roots.has(s.asset_id)).flatMap((s) => s.readings.map((r) => r.ts)).sort().pop();
  return newest ? localTime(newest, site.timezone).slice(0, 10) : null;
}

async function monthCard(site, assets, states) {
  const query = (r) => `start=${encodeURIComponent(r.start)}&end=${encodeURIComponent(r.end)}`;
  let title = "This month";
  let thisMonth = monthRange(site.timezone);
  let now = await api(`/api/v1/sites/${site.id}/kpis?${query(thisMonth)}`).catch(() => null);
  if (!now || now.energy_kwh === null) {
    // Nothing metered this month (an archive, or a meter that stopped): show the newest month with data.
    const day = latestDay(site, assets, states);
    if (!day) return el("p", { class: "muted" }, "No metered energy yet.");
    thisMonth = monthRange(site.timezone, 0, day);
    title = "Newest month with data";
    now = await api(`/api/v1/sites/${site.id}/kpis?${query(thisMonth)}`).catch(() => null);
    if (!now) return el("p", { class: "muted" }, "No metered energy yet.");
  }
  const lastMonth = monthRange(site.timezone, 1, `${thisMonth.label}-01`);
  const before = await api(`/api/v1/sites/${site.id}/kpis?${query(lastMonth)}`).catch(() => null);
  const pick = (k) => (before ? before[k] : null);
  return el("section", { class: "month", "aria-label": `${site.name}: ${title.toLowerCase()}`, "data-start": thisMonth.start, "data-end": thisMonth.end },
    el("h3", {}, `${title} (${thisMonth.label}, ${site.timezone})`),
    facts([
      ["Energy", `${fmt(now.energy_kwh, 1)} kWh${change(now.energy_kwh, pick("energy_kwh"))}`],
      ["Peak demand", `${fmt(now.peak_demand_kw, 1)} kW${now.peak_ts ? ` at ${localTime(now.peak_ts, site.timezone)}` : ""}${change(now.peak_demand_kw, pick("peak_demand_kw"))}`],
      ["CO2", `${fmt(now.co2_kg, 1)} kg${change(now.co2_kg, pick("co2_kg"))}`],
      ["Cost per kWh", now.cost_per_kwh === null ? "no tariff assigned" : `${fmt(now.cost_per_kwh, 4)} ${now.currency ?? ""}${change(now.cost_per_kwh, pick("cost_per_kwh"))}`],
      ["Data completeness", `${fmt(100 * (now.completeness ?? 0), 1)} %`],
    ]));
}

function liveTile(asset, site, state, stops, streams) {
  const value = el("span", { class: "live-value" }, "–");
  const when = el("span", { class: "muted" }, "");
  const tile = el("span", { class: "live", "data-asset": asset.id, "aria-live": "polite" }, value, " ", when);
  const show = (reading) => {
    const unit = reading.unit || "";
    value.textContent = `${reading.quantity} ${fmt(reading.value, 2)} ${unit}`;
    when.textContent = `at ${localTime(reading.ts, site.timezone)}`;
    tile.dataset.ts = reading.ts;
    tile.dataset.value = String(reading.value);
  };
  const pickReading = (readings) => readings.find((r) => r.quantity === "power")
    || readings.find((r) => r.quantity === "energy") || readings[0];
  if (state) {
    const latest = pickReading(state.readings);
    if (latest) show(latest);
  }
  if (streams.count < MAX_STREAMS) {
    streams.count += 1;
    stops.push(follow(asset.id, (name, data) => {
      if (name === "reading") show(data);
      if (name === "state") { const latest = pickReading(data.readings); if (latest) show(latest); }
    }));
  }
  return tile;
}

function assetTree(assets, site, tree, states, stops, streams) {
  const byParent = new Map();
  const ids = new Set(assets.map((a) => a.id));
  for (const asset of assets) {
    const parent = asset.parent_id && ids.has(asset.parent_id) ? asset.parent_id : null;
    if (!byParent.has(parent)) byParent.set(parent, []);
    byParent.get(parent).push(asset);
  }
  const meters = new Map((tree ? tree.meters : []).map((m) => [m.asset_id, m]));
  const branch = (parent) => el("ul", { class: parent ? "tree" : "tree root" }, (byParent.get(parent) || []).map((asset) => {
    const meter = meters.get(asset.id);
    const remainder = meter && meter.unmetered_kwh !== null
      ? el("span", { class: meter.meter_error ? "badge warn" : "badge" }, `unmetered ${fmt(meter.unmetered_kwh, 1)} kWh`) : null;
    return el("li", {},
      el("a", { href: `#/assets/${encodeURIComponent(asset.id)}` }, asset.name), " ",
      el("span", { class: "muted" }, `${asset.kind}`), " ",
      meter && meter.energy_kwh !== null ? el("span", {}, `${fmt(meter.energy_kwh, 1)} kWh in the month `) : null,
      remainder, " ", liveTile(asset, site, states.get(asset.id), stops, streams),
      byParent.has(asset.id) ? branch(asset.id) : null);
  }));
  return branch(null);
}

export async function renderOverview(main) {
  const sites = await api("/api/v1/sites");
  const stops = [];
  const streams = { count: 0 };
  const body = el("div", {});
  clear(main).append(el("h1", {}, "Overview"), body);
  if (!sites.length) body.append(el("p", {}, "No sites yet: register one with digitaltwin sites add."));
  for (const site of sites) {
    const assets = await api(`/api/v1/assets?site_id=${encodeURIComponent(site.id)}`);
    // every asset's state in one request (the live tiles, and the newest day with data)
    const states = new Map((await api(`/api/v1/sites/${encodeURIComponent(site.id)}/state`).catch(() => [])).map((s) => [s.asset_id, s]));
    const month = await monthCard(site, assets, states);
    const range = month.dataset.start ? { start: month.dataset.start, end: month.dataset.end } : monthRange(site.timezone);
    const tree = await api(`/api/v1/sites/${site.id}/metering-tree?start=${encodeURIComponent(range.start)}&end=${encodeURIComponent(range.end)}`).catch(() => null);
    const open = await api(`/api/v1/alarms?site_id=${encodeURIComponent(site.id)}&state=active&state=acknowledged&limit=5`).catch(() => []);
    const alarms = el("section", { class: "alarms", "aria-label": `${site.name}: open alarms` },
      el("h3", {}, "Open alarms"),
      open.length ? el("ul", {}, open.map((a) => el("li", {},
        el("span", { class: `badge sev-${a.severity}` }, a.severity), ` ${a.type} on ${a.asset_id} (${a.state}) `,
        el("a", { href: "#/alarms" }, "details")))) : el("p", { class: "muted" }, "None."));
    body.append(el("section", { class: "card", "aria-labelledby": `site-${site.id}` },
      el("h2", { id: `site-${site.id}` }, site.name, " ", el("span", { class: "muted" }, site.id)),
      month, alarms,
      el("h3", {}, "Assets"),
      assets.length ? assetTree(assets, site, tree, states, stops, streams) : el("p", { class: "muted" }, "No assets.")));
  }
  return () => stops.forEach((stop) => stop());
}

