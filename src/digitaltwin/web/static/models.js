// Models: champion and challengers per asset with their holdout metrics, activation (admin),
// and a stored backtest's metrics and plot by its id.
import { api, allows } from "./app.js";
import { clear, el, fmt, toast } from "./dom.js";

const pct = (v) => (v === null || v === undefined ? "–" : `${fmt(100 * v, 1)} %`);

function modelRow(model, refresh) {
  const activate = allows("admin") && !model.active
    ? el("button", { type: "button", "data-min-role": "admin", "aria-label": `Activate ${model.algorithm} v${model.version} for ${model.asset_id}` }, "Activate")
    : null;
  if (activate) {
    activate.addEventListener("click", async () => {
      try {
        await api(`/api/v1/models/${encodeURIComponent(model.model_id)}/activate`, { method: "POST" });
        toast(`${model.algorithm} v${model.version} is now the champion of ${model.asset_id}.`);
        refresh();
      } catch (error) { toast(`Not activated: ${error.message}`); }
    });
  }
  return el("tr", {},
    el("td", {}, model.asset_id), el("td", {}, model.algorithm), el("td", {}, model.version),
    el("td", {}, model.active ? el("strong", {}, "champion") : "challenger"),
    el("td", { class: "num" }, fmt(model.metrics.mae, 2)), el("td", { class: "num" }, pct(model.metrics.cv_rmse)),
    el("td", { class: "num" }, pct(model.metrics.nmbe)), el("td", { class: "num" }, pct(model.metrics.coverage_80)),
    el("td", {}, `${model.training_window.start?.slice(0, 10) ?? ""} – ${model.training_window.end?.slice(0, 10) ?? ""}`),
    el("td", {}, activate));
}

export async function renderModels(main, assetId) {
  const table = el("tbody", {});
  const failures = el("div", {});
  const refresh = async () => {
    const answer = await api(`/api/v1/models${assetId ? `?asset_id=${encodeURIComponent(assetId)}` : ""}`);
    table.replaceChildren(...answer.models.map((m) => modelRow(m, refresh)));
    const failed = Object.entries(answer.load_failures);
    failures.replaceChildren(failed.length ? el("p", { class: "error" }, `Failed to load: ${failed.map(([k, v]) => `${k}: ${v}`).join("; ")}`) : "");
  };
  const backtestId = el("input", { id: "backtest-id", name: "backtest-id", placeholder: "backtest id" });
  const backtest = el("div", { id: "backtest" });
  const lookup = el("form", { class: "controls", "aria-label": "Backtest" },
    el("label", { for: "backtest-id" }, "Backtest id"), backtestId, el("button", { type: "submit" }, "Show"));
  lookup.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const id = encodeURIComponent(backtestId.value.trim());
      const result = await api(`/api/v1/backtests/${id}`);
      const plot = await api(`/api/v1/backtests/${id}/plot.png`);
      const rows = Object.entries(result.metrics).map(([algorithm, m]) => el("tr", {},
        el("td", {}, algorithm), el("td", { class: "num" }, fmt(m.mae, 2)), el("td", { class: "num" }, pct(m.cv_rmse)),
        el("td", { class: "num" }, pct(m.nmbe)), el("td", { class: "num" }, pct(m.coverage_80))));
      backtest.replaceChildren(
        el("table", {}, el("caption", {}, `Backtest ${result.backtest_id} of ${result.asset_id}`),
          el("thead", {}, el("tr", {}, ["algorithm", "MAE kWh", "CV(RMSE)", "NMBE", "80 % coverage"].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, rows)),
        el("img", { src: URL.createObjectURL(plot), alt: `Actual against forecast with the 10-90 % interval, backtest ${result.backtest_id}`, class: "plot" }));
    } catch (error) { backtest.replaceChildren(el("p", { class: "error" }, error.message)); }
  });
  clear(main).append(
    el("h1", {}, "Models"),
    el("section", { class: "card" },
      el("table", {}, el("caption", {}, "Champion and challengers; metrics of each model's holdout backtest"),
        el("thead", {}, el("tr", {}, ["asset", "algorithm", "version", "role", "MAE kWh", "CV(RMSE)", "NMBE", "80 % coverage", "trained on", ""].map((h) => el("th", { scope: "col" }, h)))),
        table), failures),
    el("section", { class: "card", "aria-labelledby": "bt-title" }, el("h2", { id: "bt-title" }, "Backtest results"), lookup, backtest));
  await refresh();
  return null;
}
