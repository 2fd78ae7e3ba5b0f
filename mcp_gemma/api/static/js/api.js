// The REST client of the console: bearer token, JSON in and out, problem+json errors as ApiError.

const TOKEN_KEY = "mcp-gemma.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** An HTTP error with the problem's detail (RFC 9457) as its message. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || problem.error || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function problemOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") return body;
  } catch {
    // not JSON: fall through
  }
  return { title: response.statusText, detail: text.trim() || `HTTP ${response.status} ${response.statusText}` };
}

/**
 * Call the API. `json` is sent as a JSON body, `form` (FormData) as multipart; the answer is parsed as
 * JSON, or returned as text with `text: true`. Non-2xx answers throw ApiError.
 */
export async function api(method, path, { json, form, query, text = false, signal } = {}) {
  const headers = { Accept: text ? "text/plain" : "application/json", ...authHeaders() };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value === undefined || value === null || value === "") continue;
      for (const one of Array.isArray(value) ? value : [value]) params.append(key, String(one));
    }
    const qs = params.toString();
    if (qs) url += `?${qs}`;
  }
  const response = await fetch(url, { method, headers, body, signal, cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (text) return response.text();
  if (response.status === 204) return null;
  return response.json();
}

/** Build an element: h("td", {class: "x", dataset: {id: "1"}}, "text", child). Text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (key === "class") node.className = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const errorBox = () => document.getElementById("error");

/** Show an error to the person (the problem's detail), or clear it with null. */
export function showError(error) {
  const box = errorBox();
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  const status = error instanceof ApiError ? `${error.status}: ` : "";
  box.textContent = `${status}${error.message || String(error)}`;
  box.hidden = false;
}

/** Run an async action for a form or button: clears the error, shows a failure, disables while busy. */
export async function guarded(control, action) {
  showError(null);
  if (control) control.disabled = true;
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    if (control) control.disabled = false;
  }
}

/** Parse an optional JSON-object field; a bad value is an Error naming the field. */
export function jsonObjectField(value, name) {
  const text = (value || "").trim();
  if (!text) return undefined;
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`${name} is not valid JSON: ${error.message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error(`${name} must be a JSON object, like {"lang": "en"}`);
  }
  return parsed;
}

/** Ask before something that cannot be undone (a modal <dialog>); resolves true when confirmed. */
export function confirmAction(message, okLabel = "Delete") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = message;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "none";
  let rest = Math.max(0, Math.round(seconds));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest || parts.length === 0) parts.push(`${rest}s`);
  return parts.join(" ");
}

export function formatTime(value) {
  if (value === null || value === undefined) return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return date.toLocaleString();
}
