// Documents: a paginated list (newest first), one document's text, delete after a confirmation.

import { api, confirmAction, formatTime, guarded, h, jsonObjectField } from "./api.js";

const PAGE_SIZE = 20;
let offset = 0;
let filter; // the applied metadata filter (a JSON object), or undefined

async function view(id) {
  const doc = await api("GET", `/v1/documents/${encodeURIComponent(id)}`);
  const card = document.getElementById("doc-view");
  document.getElementById("doc-view-title").textContent = `${doc.id} · ${doc.chunks} chunk${doc.chunks === 1 ? "" : "s"}`;
  document.getElementById("doc-view-text").textContent = doc.text ?? "";
  card.dataset.docId = doc.id;
  card.hidden = false;
}

async function remove(id) {
  if (!(await confirmAction(`Delete document “${id}” with all its chunks? This cannot be undone.`))) return;
  await api("DELETE", `/v1/documents/${encodeURIComponent(id)}`);
  const card = document.getElementById("doc-view");
  if (card.dataset.docId === id) card.hidden = true;
  await load();
}

function row(doc) {
  const metadata = Object.keys(doc.metadata || {}).length ? JSON.stringify(doc.metadata) : "";
  const button = (label, action, cls) =>
    h("button", { type: "button", class: cls, on: { click: (e) => guarded(e.currentTarget, () => action(doc.id)) } }, label);
  return h(
    "tr",
    { dataset: { docId: doc.id } },
    h("td", {}, h("code", {}, doc.id)),
    h("td", { class: "num" }, doc.chunks),
    h("td", { class: "num" }, doc.characters),
    h("td", {}, formatTime(doc.updated_at)),
    h("td", { class: "meta" }, metadata),
    h("td", { class: "actions" }, button("View", view), button("Delete", remove, "danger")),
  );
}

async function load() {
  const query = { offset, limit: PAGE_SIZE, filter: filter && JSON.stringify(filter) };
  const page = await api("GET", "/v1/documents", { query });
  if (page.documents.length === 0 && offset > 0 && page.total > 0) {
    // The last page emptied (a delete): step back.
    offset = Math.max(0, offset - PAGE_SIZE);
    return load();
  }
  const rows = document.getElementById("docs-rows");
  rows.replaceChildren(
    ...(page.documents.length
      ? page.documents.map(row)
      : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, filter ? "No document matches the filter." : "No documents yet: ingest some."))]),
  );
  const first = page.documents.length ? offset + 1 : 0;
  document.getElementById("docs-range").textContent = `${first}–${offset + page.documents.length} of ${page.total}`;
  document.getElementById("docs-prev").disabled = offset === 0;
  document.getElementById("docs-next").disabled = page.next_offset === null || page.next_offset === undefined;
  document.getElementById("docs-next").dataset.next = page.next_offset ?? "";
}

export function init() {
  const form = document.getElementById("docs-filter");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(form.querySelector("button"), () => {
      filter = jsonObjectField(form.elements.filter.value, "The filter");
      offset = 0;
      return load();
    });
  });
  document.getElementById("docs-prev").addEventListener("click", (e) => {
    offset = Math.max(0, offset - PAGE_SIZE);
    guarded(e.currentTarget, load);
  });
  document.getElementById("docs-next").addEventListener("click", (e) => {
    offset = Number(e.currentTarget.dataset.next || offset);
    guarded(e.currentTarget, load);
  });
  document.getElementById("docs-refresh").addEventListener("click", (e) => guarded(e.currentTarget, load));
}

export function show() {
  return guarded(null, load);
}
