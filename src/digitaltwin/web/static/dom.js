// Small DOM and formatting helpers shared by the pages.

/** ``el("a", {href: "#/"}, "text", child)``: an element with attributes and children (text is escaped). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function toast(message) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.hidden = false;
  setTimeout(() => { node.hidden = true; }, 4000);
}

const numberFormats = new Map();

/** ``fmt(126238.29, 2)`` -> "126,238.29"; null shows as an en dash. */
export function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (!numberFormats.has(digits)) {
    numberFormats.set(digits, new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }));
  }
  return numberFormats.get(digits).format(value);
}

const timeFormats = new Map();

/** An instant shown in the site's time zone: "2018-01-31 23:45" (formatters are cached: building one is slow). */
export function localTime(iso, timeZone, withDate = true) {
  const key = `${timeZone}|${withDate}`;
  if (!timeFormats.has(key)) {
    const options = { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (withDate) Object.assign(options, { year: "numeric", month: "2-digit", day: "2-digit" });
    timeFormats.set(key, new Intl.DateTimeFormat("en-CA", options));
  }
  const parts = {};
  for (const part of timeFormats.get(key).formatToParts(new Date(iso))) parts[part.type] = part.value;
  const time = `${parts.hour}:${parts.minute}`;
  return withDate ? `${parts.year}-${parts.month}-${parts.day} ${time}` : time;
}

/** The UTC instant (ISO) of local midnight starting ``date`` ("2018-01-01") in ``timeZone``. */
export function localMidnight(date, timeZone) {
  const [y, m, d] = date.split("-").map(Number);
  // Start from UTC midnight and correct by the zone's offset at that instant (twice, for DST edges).
  let guess = Date.UTC(y, m - 1, d);
  for (let i = 0; i < 2; i += 1) {
    const shown = new Intl.DateTimeFormat("en-CA", {
      timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date(guess));
    const p = Object.fromEntries(shown.map((x) => [x.type, Number(x.value)]));
    const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute);
    guess -= asUtc - Date.UTC(y, m - 1, d);
  }
  return new Date(guess).toISOString();
}

/** "2018-01-01" plus ``days`` calendar days. */
export function addDays(date, days) {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** Today's date in ``timeZone`` ("2026-12-05"). */
export function today(timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
}

/** A definition list of (label, value) pairs. */
export function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)]));
}
