// Data: CSV upload with the command line's column mapping and every rejected row, and the dead
// letters (rejected MQTT messages and items, with the field and the reason).
import { api, authorizedFetch } from "./app.js";
import { clear, el, facts, localTime } from "./dom.js";

const FIELDS = [
  ["asset", "Asset of every row", "steel-plant"], ["timestamp_column", "Timestamp column", "ts"],
  ["value_column", "Value column", "kwh"], ["quantity", "Quantity", "energy"], ["unit", "Unit", "kWh"],
  ["interval_seconds", "Interval (seconds)", "900"], ["timezone", "Time zone of times without offset", "Europe/Berlin"],
  ["delimiter", "Delimiter", ","], ["hour_column", "Hour column (with dates in the timestamp column)", ""],
];

function uploadSection() {
  const file = el("input", { id: "csv-file", name: "file", type: "file", accept: ".csv,text/csv", required: true });
  const inputs = FIELDS.map(([name, label, example]) => [name, label, el("input", { id: `csv-${name}`, name, placeholder: example })]);
  const label = el("select", { id: "csv-label", name: "label" }, el("option", { value: "start" }, "interval start"), el("option", { value: "end" }, "interval end"));
  const convention = el("select", { id: "csv-hour_convention", name: "hour_convention" }, el("option", { value: "ending" }, "hour ending (1-24)"), el("option", { value: "beginning" }, "hour beginning (0-23)"));
  const decimal = el("select", { id: "csv-decimal", name: "decimal" }, el("option", { value: "." }, "point (1.5)"), el("option", { value: "," }, "comma (1,5)"));
  const conflict = el("select", { id: "csv-on_conflict", name: "on_conflict" }, el("option", { value: "keep" }, "keep the stored value"), el("option", { value: "replace" }, "replace it (admins only)"));
  const result = el("div", { id: "csv-result", "aria-live": "polite" });
  const form = el("form", { class: "grid-form", "aria-label": "CSV upload" },
    el("label", { for: "csv-file" }, "CSV file"), file,
    inputs.flatMap(([name, text, input]) => [el("label", { for: `csv-${name}` }, text), input]),
    el("label", { for: "csv-label" }, "Timestamps label the"), label,
    el("label", { for: "csv-hour_convention" }, "Hour numbers are"), convention,
    el("label", { for: "csv-decimal" }, "Decimal separator of the values"), decimal,
    el("label", { for: "csv-on_conflict" }, "A reading stored with another value:"), conflict,
    el("span", {}), el("button", { type: "submit" }, "Import"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new FormData();
    body.append("file", file.files[0]);
    for (const [name, , input] of inputs) if (input.value.trim()) body.append(name, input.value.trim());
    body.append("label", label.value);
    body.append("hour_convention", convention.value);
    body.append("decimal", decimal.value);
    body.append("on_conflict", conflict.value);
    const response = await authorizedFetch("/api/v1/imports", { method: "POST", body });
    const answer = await response.json().catch(() => ({}));
    // 422 with the import's body: the file was read and every row rejected (listed below).
    const allRejected = response.status === 422 && Array.isArray(answer.rejected);
    if (!response.ok && !allRejected) {
      result.replaceChildren(el("p", { class: "error", role: "alert" }, `Not imported (${answer.field ?? "file"}): ${answer.detail ?? response.status}`));
      return;
    }
    // Only the parts there are (replaceChildren would show a null as the text "null").
    result.replaceChildren(...[
      allRejected ? el("p", { class: "error", role: "alert" }, `Not imported: all ${answer.rows_rejected} rows were rejected.`) : null,
      facts([["Rows read", answer.rows_read], ["Readings stored", answer.readings_stored], ["Already stored", answer.duplicates],
        ["Rejected rows", answer.rows_rejected], ["Conflicts", answer.conflicts.length]]),
      answer.rejected.length ? el("div", { class: "scroll" }, el("table", { id: "csv-rejected" }, el("caption", {}, "Every rejected row"),
        el("thead", {}, el("tr", {}, ["line", "field", "reason"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, answer.rejected.map((r) => el("tr", {}, el("td", {}, r.line), el("td", {}, r.field), el("td", {}, r.reason)))))) : null,
      answer.conflicts.length ? el("div", { class: "scroll" }, el("table", {}, el("caption", {}, "Conflicts (stored value against the file's)"),
        el("thead", {}, el("tr", {}, ["line", "series", "time (UTC)", "stored", "file"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, answer.conflicts.map((c) => el("tr", {}, el("td", {}, c.line), el("td", {}, `${c.asset_id} ${c.quantity}`),
          el("td", {}, c.ts), el("td", {}, c.stored_value), el("td", {}, c.new_value)))))) : null,
    ].filter(Boolean));
  });
  return el("section", { class: "card", "aria-labelledby": "csv-title" },
    el("h2", { id: "csv-title" }, "Import a CSV file"),
    el("p", { class: "muted" }, "The same column mapping as digitaltwin import; every rejected row is listed with its line and field."),
    form, result);
}

export async function renderData(main) {
  const topic = el("input", { id: "dl-topic", name: "topic_prefix", placeholder: "dt/site/" });
  const rows = el("tbody", {});
  const show = async () => {
    const query = topic.value ? `?topic_prefix=${encodeURIComponent(topic.value)}` : "";
    const letters = await api(`/api/v1/dead-letters${query}`);
    rows.replaceChildren(...(letters.length ? letters.map((d) => el("tr", {},
      el("td", {}, localTime(d.received_at, "UTC") + " UTC"), el("td", {}, d.topic), el("td", {}, d.item_index ?? "–"),
      el("td", {}, d.field ?? "–"), el("td", {}, d.reason_code), el("td", {}, d.reason),
      el("td", {}, el("code", {}, d.payload.slice(0, 120))))) : [el("tr", {}, el("td", { colspan: 7 }, "No dead letters."))]));
  };
  const form = el("form", { class: "controls", "aria-label": "Filter dead letters" },
    el("label", { for: "dl-topic" }, "Topic prefix"), topic, el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => { event.preventDefault(); show(); });
  clear(main).append(el("h1", {}, "Data"), uploadSection(),
    el("section", { class: "card", "aria-labelledby": "dl-title" },
      el("h2", { id: "dl-title" }, "Dead letters"), form,
      el("div", { class: "scroll" }, el("table", {}, el("caption", {}, "Rejected telemetry, newest first"),
        el("thead", {}, el("tr", {}, ["received", "topic", "item", "field", "code", "reason", "payload"].map((h) => el("th", { scope: "col" }, h)))),
        rows))));
  await show();
  return null;
}
