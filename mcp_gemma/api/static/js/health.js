// Health: liveness, the readiness components, and the key figures of /metrics (Prometheus text).

import { api, guarded, h } from "./api.js";

// Shown from /metrics: the server's own families, without histogram internals; REST requests are
// summed over routes by status (the per-route figures stay in /metrics for a scraper).
const HIDDEN_SUFFIXES = ["_bucket", "_sum", "_count", "_created"];
const BY_STATUS = "mcp_gemma_http_requests_total";

/** Parse Prometheus text exposition into {name, labels, value} samples (comments skipped). */
export function parseMetrics(text) {
  const samples = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
  for (const raw of text.split("\n")) {
    if (!raw || raw.startsWith("#")) continue;
    const match = line.exec(raw);
    if (match) samples.push({ name: match[1], labels: match[3] || "", value: Number(match[4]) });
  }
  return samples;
}

function keyMetrics(samples) {
  const shown = [];
  const byStatus = new Map();
  for (const sample of samples) {
    if (!sample.name.startsWith("mcp_gemma_") || HIDDEN_SUFFIXES.some((s) => sample.name.endsWith(s))) continue;
    if (sample.name === BY_STATUS) {
      const status = /status="([^"]*)"/.exec(sample.labels)?.[1] ?? "?";
      byStatus.set(status, (byStatus.get(status) ?? 0) + sample.value);
    } else {
      shown.push(sample);
    }
  }
  const requests = [...byStatus.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([status, value]) => ({ name: BY_STATUS, labels: `status="${status}"`, value }));
  return [...requests, ...shown];
}

function formatValue(value) {
  if (!Number.isFinite(value)) return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(4).replace(/0+$/, "").replace(/\.$/, "");
}

function detail(component) {
  return Object.entries(component.detail || {})
    .map(([key, value]) => `${key}=${value}`)
    .join(" · ");
}

async function load() {
  const [live, ready, metrics] = await Promise.allSettled([
    api("GET", "/healthz"),
    api("GET", "/readyz"),
    api("GET", "/metrics", { text: true }),
  ]);
  const liveBox = document.getElementById("health-live");
  liveBox.textContent =
    live.status === "fulfilled" ? `${live.value.status} · version ${live.value.version}` : `not live: ${live.reason.message}`;
  const components = document.getElementById("health-components");
  if (ready.status === "fulfilled") {
    components.replaceChildren(
      ...ready.value.components.map((c) =>
        h(
          "tr",
          { dataset: { component: c.name, loaded: String(c.loaded) } },
          h("td", {}, c.name),
          h("td", {}, c.kind),
          h("td", { class: c.loaded ? "ok" : "muted" }, c.loaded ? "yes" : "no"),
          h("td", { class: "meta" }, detail(c)),
        ),
      ),
    );
  } else {
    components.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "error" }, `not ready: ${ready.reason.message}`)));
  }
  const rows = document.getElementById("health-metrics");
  if (metrics.status === "fulfilled") {
    const key = keyMetrics(parseMetrics(metrics.value));
    rows.replaceChildren(
      ...(key.length
        ? key.map((s) =>
            h(
              "tr",
              { dataset: { metric: s.name } },
              h("td", {}, h("code", {}, s.name)),
              h("td", { class: "meta" }, s.labels),
              h("td", { class: "num" }, formatValue(s.value)),
            ),
          )
        : [h("tr", {}, h("td", { colspan: 3, class: "muted" }, "no figures yet"))]),
    );
  } else {
    rows.replaceChildren(h("tr", {}, h("td", { colspan: 3, class: "error" }, `metrics: ${metrics.reason.message}`)));
  }
}

export function init() {
  document.getElementById("health-refresh").addEventListener("click", (e) => guarded(e.currentTarget, load));
}

export function show() {
  return guarded(null, load);
}
