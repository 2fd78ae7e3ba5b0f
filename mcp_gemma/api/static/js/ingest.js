// Ingest: paste a text (with id and metadata) or upload a file; the ingest report is shown.

import { api, guarded, h, jsonObjectField } from "./api.js";

function showReport(report) {
  const box = document.getElementById("ingest-result");
  box.replaceChildren(
    h(
      "p",
      { class: "ok", dataset: { docId: report.id, status: report.status } },
      `Document `,
      h("code", {}, report.id),
      ` ${report.status}: ${report.chunks} chunk${report.chunks === 1 ? "" : "s"}, ${report.characters} characters`,
      report.source ? ` from ${report.source}` : "",
      ".",
    ),
  );
}

async function ingestText(form) {
  const data = new FormData(form);
  const body = { text: data.get("text") };
  const id = String(data.get("id") || "").trim();
  if (id) body.id = id;
  const metadata = jsonObjectField(data.get("metadata"), "Metadata");
  if (metadata) body.metadata = metadata;
  showReport(await api("POST", "/v1/documents", { json: body }));
  form.reset();
}

async function ingestFile(form) {
  const data = new FormData(form);
  const file = data.get("file");
  if (!(file instanceof File) || !file.name) throw new Error("choose a file to upload");
  const upload = new FormData();
  upload.append("file", file, file.name);
  const id = String(data.get("id") || "").trim();
  if (id) upload.append("id", id);
  const metadata = jsonObjectField(data.get("metadata"), "Metadata");
  if (metadata) upload.append("metadata", JSON.stringify(metadata));
  showReport(await api("POST", "/v1/documents", { form: upload }));
  form.reset();
}

export function init() {
  for (const [id, action] of [
    ["ingest-text", ingestText],
    ["ingest-file", ingestFile],
  ]) {
    const form = document.getElementById(id);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(form.querySelector("button[type=submit]"), () => action(form));
    });
  }
}

export function show() {
  document.getElementById("ingest-result").replaceChildren();
}
