// Search: one query, the three modes side by side (vector, semantic passages, hybrid).

import { api, h } from "./api.js";

const MODES = ["vector", "semantic", "hybrid"];

function hitItem(hit) {
  // Vector and hybrid answer chunks (`hits`), semantic answers passages: both carry doc_id, score, text.
  const scores = [`score ${hit.score.toFixed(3)}`];
  if (hit.vector_score !== undefined && hit.vector_score !== null) scores.push(`cos ${hit.vector_score.toFixed(3)}`);
  if (hit.keyword_score !== undefined && hit.keyword_score !== null) scores.push(`bm25 ${hit.keyword_score.toFixed(3)}`);
  return h(
    "li",
    { class: "hit", dataset: { docId: hit.doc_id, chunkId: hit.chunk_id } },
    h("div", { class: "hit-head" }, h("code", {}, hit.doc_id), " ", h("span", { class: "muted" }, scores.join(" · "))),
    h("p", { class: "hit-text" }, hit.text),
  );
}

async function searchMode(column, query, limit) {
  const list = column.querySelector(".hits");
  const note = column.querySelector(".muted");
  column.dataset.state = "loading";
  list.replaceChildren(h("li", { class: "muted" }, "searching…"));
  try {
    const result = await api("POST", "/v1/search", { json: { query, mode: column.dataset.mode, limit } });
    const hits = result.hits ?? result.passages ?? [];
    list.replaceChildren(...(hits.length ? hits.map(hitItem) : [h("li", { class: "muted" }, "no match")]));
    const extra = result.fusion ? `, ${result.fusion} fusion` : "";
    note.textContent = `${hits.length} of ${result.searched_chunks} chunks, ${result.took_ms.toFixed(1)} ms${extra}`;
    column.dataset.state = "done";
  } catch (error) {
    list.replaceChildren(h("li", { class: "error" }, error.message));
    column.dataset.state = "error";
  }
}

export function init() {
  const form = document.getElementById("search-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const query = String(data.get("query")).trim();
    const limit = Number(data.get("limit")) || 5;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await Promise.all(
        MODES.map((mode) => searchMode(document.querySelector(`#page-search [data-mode=${mode}]`), query, limit)),
      );
    } finally {
      button.disabled = false;
    }
  });
}

export function show() {}
