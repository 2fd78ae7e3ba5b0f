// The console: hash routing between the pages, and the bearer-token field.

import { getToken, setToken, showError } from "./api.js";
import * as chat from "./chat.js";
import * as documents from "./documents.js";
import * as health from "./health.js";
import * as ingest from "./ingest.js";
import * as memory from "./memory.js";
import * as search from "./search.js";

const PAGES = { ingest, documents, search, memory, chat, health };
const DEFAULT_PAGE = "ingest";

function pageName() {
  const name = location.hash.replace(/^#\/?/, "");
  return name in PAGES ? name : DEFAULT_PAGE;
}

function route() {
  const name = pageName();
  showError(null);
  for (const section of document.querySelectorAll("[data-page]")) section.hidden = section.dataset.page !== name;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `mcp-gemma · ${name}`;
  document.body.dataset.current = name;
  // Each page loads what it shows when it is opened; body[data-ready] tells tests it has.
  delete document.body.dataset.ready;
  Promise.resolve(PAGES[name].show()).finally(() => {
    if (pageName() === name) document.body.dataset.ready = name;
  });
}

function initToken() {
  const input = document.getElementById("token");
  const state = document.getElementById("token-state");
  const describe = () => {
    state.textContent = getToken() ? "token set for this tab" : "no token";
  };
  input.value = getToken();
  describe();
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    describe();
    window.dispatchEvent(new Event("mcp-gemma:token"));
    route();
  });
}

initToken();
for (const page of Object.values(PAGES)) page.init();
window.addEventListener("hashchange", route);
route();
