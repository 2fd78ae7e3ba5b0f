// Memory: the tiers with their counts and TTLs, a tier's memories with the time each has left,
// store, recall and clear.

import { api, confirmAction, formatDuration, formatTime, guarded, h } from "./api.js";

let openTier = null;

const agent = () => document.getElementById("memory-agent").value.trim() || "default";

function expiry(item) {
  if (!item.expires_at) return h("span", { class: "ttl" }, "never expires");
  const left = (Date.parse(item.expires_at) - Date.now()) / 1000;
  return h(
    "span",
    { class: "ttl", dataset: { expiresAt: item.expires_at }, title: formatTime(item.expires_at) },
    left > 0 ? `expires in ${formatDuration(left)}` : "expired",
  );
}

function memoryItem(item) {
  return h(
    "li",
    { class: "memory", dataset: { memoryId: item.id, tier: item.tier } },
    h("p", {}, item.content),
    h(
      "p",
      { class: "muted" },
      `importance ${item.importance} · accessed ${item.access_count}× · stored ${formatTime(item.created_at)} · `,
      expiry(item),
      item.tags.length ? ` · tags ${item.tags.join(", ")}` : "",
    ),
  );
}

async function fetchTier(tier) {
  const page = await api("GET", `/v1/memory/tiers/${encodeURIComponent(tier)}`, { query: { agent_id: agent() } });
  return page.items ?? page;
}

function renderTier(tier, items) {
  openTier = tier;
  const box = document.getElementById("memory-items");
  box.dataset.tier = tier;
  document.getElementById("memory-items-title").textContent = `${tier}: ${items.length} newest`;
  box.querySelector(".items").replaceChildren(
    ...(items.length ? items.map(memoryItem) : [h("li", { class: "muted" }, "empty")]),
  );
  box.hidden = false;
}

async function showTier(tier) {
  renderTier(tier, await fetchTier(tier));
}

function tierRow(stats) {
  const rate = stats.hit_rate === null || stats.hit_rate === undefined ? "–" : `${(stats.hit_rate * 100).toFixed(0)} %`;
  return h(
    "tr",
    { dataset: { tier: stats.tier } },
    h("td", {}, stats.tier),
    h("td", { class: "num count" }, stats.count),
    h("td", { class: "num" }, stats.capacity),
    h("td", { class: "ttl" }, stats.ttl_s === null ? "none" : formatDuration(stats.ttl_s)),
    h("td", { class: "num" }, rate),
    h(
      "td",
      {},
      h("button", { type: "button", on: { click: (e) => guarded(e.currentTarget, () => showTier(stats.tier)) } }, "Show"),
    ),
  );
}

function fillTierSelects(tiers) {
  for (const select of document.querySelectorAll("#page-memory .tier-select")) {
    const keep = select.value;
    const fixed = [...select.querySelectorAll("option[value='']")];
    select.replaceChildren(...fixed, ...tiers.map((t) => h("option", { value: t }, t)));
    // Keep the choice; else "every tier" where offered, else the server's default tier.
    if (tiers.includes(keep)) select.value = keep;
    else if (fixed.length) select.value = "";
    else select.value = tiers.includes("short_term") ? "short_term" : tiers[0];
  }
}

async function load() {
  const stats = await api("GET", "/v1/memory/stats", { query: { agent_id: agent() } });
  // Fetch the open tier's items before drawing anything, so the counts and the list change together.
  const tier = openTier;
  const items = tier ? await fetchTier(tier) : null;
  document.getElementById("memory-tiers").replaceChildren(...stats.tiers.map(tierRow));
  fillTierSelects(stats.tiers.map((t) => t.tier));
  if (tier) renderTier(tier, items);
}

function result(...content) {
  document.getElementById("memory-result").replaceChildren(h("p", { class: "ok" }, ...content));
}

async function store(form) {
  const data = new FormData(form);
  const tags = String(data.get("tags") || "")
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  const report = await api("POST", "/v1/memory", {
    json: {
      content: data.get("content"),
      tier: data.get("tier"),
      importance: Number(data.get("importance")),
      tags,
      agent_id: agent(),
    },
  });
  const ttl = report.expires_at ? `expires ${formatTime(report.expires_at)}` : "never expires";
  result(`Stored in ${report.tier} (${report.tier_count} there now), ${ttl}.`);
  form.querySelector("textarea").value = "";
  openTier = report.tier;
  await load();
}

async function recall(form) {
  const data = new FormData(form);
  const found = await api("POST", "/v1/memory/recall", {
    json: { query: data.get("query"), limit: Number(data.get("limit")) || 5, agent_id: agent() },
  });
  form.querySelector(".hits").replaceChildren(
    ...(found.hits.length
      ? found.hits.map((hit) =>
          h(
            "li",
            { class: "hit", dataset: { memoryId: hit.item.id, tier: hit.item.tier } },
            h("p", {}, hit.item.content),
            h("p", { class: "muted" }, `${hit.item.tier} · score ${hit.score.toFixed(3)} · `, expiry(hit.item)),
          ),
        )
      : [h("li", { class: "muted" }, `nothing among ${found.candidates} candidates`)]),
  );
}

async function clear(form) {
  const tier = new FormData(form).get("tier") || null;
  const what = tier ? `the ${tier} tier` : "every tier";
  if (!(await confirmAction(`Clear ${what} of agent “${agent()}”? This cannot be undone.`, "Clear"))) return;
  const report = await api("DELETE", "/v1/memory", { query: { tier, agent_id: agent(), confirm: true } });
  const removed = Object.entries(report.removed)
    .map(([t, n]) => `${n} from ${t}`)
    .join(", ");
  result(`Cleared: ${removed || "nothing"}.`);
  await load();
}

export function init() {
  for (const [id, action] of [
    ["memory-store", store],
    ["memory-recall", recall],
    ["memory-clear", clear],
  ]) {
    const form = document.getElementById(id);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(form.querySelector("button[type=submit]"), () => action(form));
    });
  }
  document.getElementById("memory-refresh").addEventListener("click", (e) => guarded(e.currentTarget, load));
  document.getElementById("memory-agent").addEventListener("change", () => {
    openTier = null;
    document.getElementById("memory-items").hidden = true;
    guarded(null, load);
  });
}

export function show() {
  return guarded(null, load);
}
