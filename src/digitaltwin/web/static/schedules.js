// Schedules: a site's plan in force, its battery SOC planned against realised, and its cost.
import { api } from "./app.js";
import { chartBox, dispose, labels, timeSeriesChart } from "./charts.js";
import { clear, el, facts, fmt } from "./dom.js";

export async function renderSchedules(main, siteId) {
  const sites = await api("/api/v1/sites");
  const site = sites.find((s) => s.id === siteId) || sites[0];
  const picker = el("select", { id: "schedule-site", name: "site" }, sites.map((s) => el("option", { value: s.id, selected: site && s.id === site.id }, s.name)));
  picker.addEventListener("change", () => { location.hash = `#/schedules/${encodeURIComponent(picker.value)}`; });
  const body = el("div", {});
  clear(main).append(el("h1", {}, "Schedules"), el("p", { class: "controls" }, el("label", { for: "schedule-site" }, "Site"), picker), body);
  if (!site) { body.append(el("p", {}, "No sites.")); return null; }
  let schedule;
  try {
    schedule = await api(`/api/v1/sites/${encodeURIComponent(site.id)}/schedules/latest`);
  } catch (error) {
    body.append(el("p", { class: "muted" }, `No schedule for ${site.name} yet (POST /api/v1/sites/${site.id}/schedules).`));
    return null;
  }
  const tracking = await api(`/api/v1/schedules/${schedule.id}/tracking`);
  const plan = schedule.plan;
  const boxes = [];
  const steps = labels(plan.timestamps, site.timezone, "hour");
  const socBoxes = Object.entries(plan.batteries).map(([assetId, battery]) => {
    const box = chartBox(`State of charge of ${assetId}, planned and realised, percent`);
    const realised = plan.timestamps.map((_, i) => {
      const soc = tracking.steps[i]?.batteries[assetId]?.realised_soc;
      return soc === null || soc === undefined ? null : 100 * soc;
    });
    boxes.push([box, {
      unit: "%", labels: steps,
      series: [
        { name: "planned SOC %", kind: "line", values: battery.soc.map((v) => 100 * v) },
        { name: "realised SOC %", kind: "line", values: realised },
      ],
    }]);
    return el("section", { class: "card" }, el("h2", {}, `Battery ${assetId}`), box);
  });
  const gridBox = chartBox("Planned grid import and load, kW");
  boxes.push([gridBox, { unit: "kW", labels: steps, series: [
    { name: "load forecast", kind: "line", values: plan.load_kw },
    { name: "planned grid import", kind: "line", values: plan.grid_import_kw.map((v, i) => v - plan.grid_export_kw[i]) },
    ...Object.entries(plan.batteries).map(([id, b]) => ({ name: `${id} setpoint`, kind: "bar", faded: true, values: b.setpoint_kw })),
  ] }]);
  body.append(
    el("section", { class: "card" }, el("h2", {}, `Version ${schedule.version}, ${plan.mode}`),
      facts([
        ["Planned cost", `${fmt(plan.cost.total, 2)} ${plan.currency} (energy ${fmt(plan.cost.energy, 2)}, export ${fmt(plan.cost.export_credit, 2)}, demand ${fmt(plan.cost.demand, 2)})`],
        ["Risk", plan.risk],
        ["Realised so far", `${fmt(tracking.totals.realised_cost, 2)} against ${fmt(tracking.totals.planned_cost, 2)} planned over ${tracking.totals.steps_with_data} steps`],
        ["Published", (schedule.published.mqtt || []).map((p) => `${p.topic}: ${p.ok ? "acknowledged" : p.error}`).join("; ") || schedule.published.skipped || "not published"],
      ])),
    ...socBoxes, el("section", { class: "card" }, el("h2", {}, "Grid"), gridBox));
  boxes.forEach(([box, options]) => timeSeriesChart(box, options));
  return () => boxes.forEach(([box]) => dispose(box));
}
