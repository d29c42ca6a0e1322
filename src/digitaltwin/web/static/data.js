// Data: the dead letters (rejected MQTT messages and items, with the field and the reason).
import { api } from "./app.js";
import { clear, el, localTime } from "./dom.js";

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
  clear(main).append(el("h1", {}, "Data"),
    el("section", { class: "card", "aria-labelledby": "dl-title" },
      el("h2", { id: "dl-title" }, "Dead letters"), form,
      el("div", { class: "scroll" }, el("table", {}, el("caption", {}, "Rejected telemetry, newest first"),
        el("thead", {}, el("tr", {}, ["received", "topic", "item", "field", "code", "reason", "payload"].map((h) => el("th", { scope: "col" }, h)))),
        rows))));
  await show();
  return null;
}
