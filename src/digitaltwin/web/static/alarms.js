// Alarms: list and filter, acknowledge and clear with a comment (operator), and each alarm's
// evidence: the metered energy around it against the range the detector expected.
import { api, allows } from "./app.js";
import { chartBox, dispose, labels, timeSeriesChart } from "./charts.js";
import { clear, el, facts, fmt, localTime, toast } from "./dom.js";

const STATES = ["active", "acknowledged", "cleared"];
const SEVERITIES = ["critical", "warning", "info"];

function actionForm(alarm, refresh) {
  if (!allows("operator") || alarm.state === "cleared") return null;
  const id = `comment-${alarm.id}`;
  const comment = el("input", { id, name: "comment", maxlength: 2000, placeholder: "comment" });
  const act = async (action) => {
    try {
      await api(`/api/v1/alarms/${alarm.id}/${action}`, { method: "POST", json: { comment: comment.value || null } });
      toast(`Alarm ${alarm.id} ${action === "clear" ? "cleared" : "acknowledged"}.`);
      refresh();
    } catch (error) { toast(`Not done: ${error.message}`); }
  };
  const buttons = [];
  if (alarm.state === "active") {
    const ack = el("button", { type: "button", "data-min-role": "operator" }, "Acknowledge");
    ack.addEventListener("click", () => act("acknowledge"));
    buttons.push(ack);
  }
  const clr = el("button", { type: "button", "data-min-role": "operator" }, "Clear");
  clr.addEventListener("click", () => act("clear"));
  buttons.push(clr);
  return el("div", { class: "controls", "data-min-role": "operator" }, el("label", { for: id }, "Comment"), comment, ...buttons);
}

async function evidence(alarm, box, note) {
  // The asset's hourly energy from a day before the alarm to a day after it was last seen (at most
  // a week after it started: a device silent for years has nothing more to show).
  const asset = await api(`/api/v1/assets/${encodeURIComponent(alarm.asset_id)}`);
  const site = await api(`/api/v1/sites/${encodeURIComponent(asset.site_id)}`);
  const start = new Date(Date.parse(alarm.started_at) - 86400000).toISOString();
  const last = Math.min(Date.parse(alarm.last_seen_at), Date.parse(alarm.started_at) + 7 * 86400000);
  const end = new Date(Math.min(last + 86400000, Date.now())).toISOString();
  try {
    const report = await api(`/api/v1/assets/${encodeURIComponent(alarm.asset_id)}/energy?start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}&bucket=hour`);
    // The expected range is drawn only when it is energy per hour (a stale device's is in seconds).
    const energy = String(alarm.evidence.unit || "").startsWith("kWh");
    const [low, high] = energy ? alarm.evidence.expected || [null, null] : [null, null];
    const inAlarm = (b) => Date.parse(b.start) >= Date.parse(alarm.started_at) && Date.parse(b.start) <= last;
    timeSeriesChart(box, {
      unit: "kWh", labels: labels(report.buckets.map((b) => b.start), site.timezone, "hour"),
      series: [
        { name: "metered", kind: "line", values: report.buckets.map((b) => b.energy_kwh) },
        { name: "expected low", kind: "line", values: report.buckets.map((b) => (inAlarm(b) ? low : null)) },
        { name: "expected high", kind: "line", values: report.buckets.map((b) => (inAlarm(b) ? high : null)) },
      ],
    });
    note.textContent = energy ? `Times in ${site.timezone}; the expected range is drawn over the alarm's span.`
      : `Times in ${site.timezone}; the alarm's evidence is not energy, so only the metered energy is drawn.`;
  } catch (error) {
    box.hidden = true;
    note.textContent = `No energy to show: ${error.message}`;
  }
}

function alarmCard(alarm, refresh, boxes) {
  const box = chartBox(`Evidence of alarm ${alarm.id}: metered energy against the expected range, kWh`);
  const note = el("p", { class: "muted" });
  boxes.push(box);
  const card = el("section", { class: `card alarm ${alarm.state}`, "data-alarm": alarm.id, "aria-labelledby": `alarm-${alarm.id}` },
    el("h2", { id: `alarm-${alarm.id}` }, `${alarm.type} on `, el("a", { href: `#/assets/${encodeURIComponent(alarm.asset_id)}` }, alarm.asset_id),
      " ", el("span", { class: `badge sev-${alarm.severity}` }, alarm.severity), " ", el("span", { class: "badge state" }, alarm.state)),
    facts([
      ["Started", `${localTime(alarm.started_at, "UTC")} UTC`],
      ["Last seen", `${localTime(alarm.last_seen_at, "UTC")} UTC`],
      ["Evidence", Object.entries(alarm.evidence).map(([key, value]) => `${key}: ${Array.isArray(value)
        ? value.map((v) => (typeof v === "number" ? fmt(v, 2) : String(v ?? "–"))).join(" – ")
        : typeof value === "number" ? fmt(value, 2) : String(value ?? "–")}`).join("; ")],
      ["Acknowledged", alarm.acknowledged_at ? `${alarm.acknowledged_by}: ${alarm.acknowledged_comment || "–"}` : "no"],
      ["Cleared", alarm.cleared_at ? `${alarm.cleared_by}: ${alarm.cleared_comment || "–"}` : "no"],
    ]),
    actionForm(alarm, refresh), box, note);
  evidence(alarm, box, note).catch(() => {});
  return card;
}

export async function renderAlarms(main) {
  const stateSelect = el("select", { id: "alarm-state", name: "state" },
    el("option", { value: "" }, "open (active or acknowledged)"), STATES.map((s) => el("option", { value: s }, s)));
  const severitySelect = el("select", { id: "alarm-severity", name: "severity" },
    el("option", { value: "" }, "any"), SEVERITIES.map((s) => el("option", { value: s }, s)));
  const assetInput = el("input", { id: "alarm-asset", name: "asset_id", placeholder: "asset id" });
  const list = el("div", { id: "alarm-list" });
  let boxes = [];
  const refresh = async () => {
    boxes.forEach(dispose);
    boxes = [];
    const query = new URLSearchParams();
    if (stateSelect.value) query.append("state", stateSelect.value);
    else { query.append("state", "active"); query.append("state", "acknowledged"); }
    if (severitySelect.value) query.append("severity", severitySelect.value);
    if (assetInput.value) query.append("asset_id", assetInput.value.trim());
    const alarms = await api(`/api/v1/alarms?${query}`);
    list.replaceChildren(...(alarms.length ? alarms.map((a) => alarmCard(a, refresh, boxes)) : [el("p", { class: "muted" }, "No alarms match.")]));
  };
  const form = el("form", { class: "controls", "aria-label": "Filter alarms" },
    el("label", { for: "alarm-state" }, "State"), stateSelect,
    el("label", { for: "alarm-severity" }, "Severity"), severitySelect,
    el("label", { for: "alarm-asset" }, "Asset"), assetInput,
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  clear(main).append(el("h1", {}, "Alarms"), form, list);
  await refresh();
  return () => boxes.forEach(dispose);
}
