// Chat: one WebSocket to /v1/chat; the answer streams in token by token, agent steps and evidence as
// they come; cancel; the session id is kept for this tab so a reload resumes the conversation.

import { getToken, h, showError } from "./api.js";

const SESSION_KEY = "mcp-gemma.chat-session";
const PROTOCOL = "mcp-gemma.chat";

let socket = null;
let opening = null;
let current = null; // the assistant turn being streamed: {bubble, text, steps, tokens}

const $ = (id) => document.getElementById(id);

function setState(text) {
  $("chat-state").textContent = text;
}

function setSession(id) {
  if (id) sessionStorage.setItem(SESSION_KEY, id);
  else sessionStorage.removeItem(SESSION_KEY);
  $("chat-session").textContent = id || "(new)";
}

function busy(on) {
  $("chat-send").disabled = on;
  $("chat-new").disabled = on;
  $("chat-cancel").disabled = !on;
}

/** The browser cannot set headers on a WebSocket: the token travels as a subprotocol, not in the URL. */
function protocols() {
  const token = getToken();
  if (!token) return [PROTOCOL];
  const encoded = btoa(String.fromCharCode(...new TextEncoder().encode(token)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
  return [PROTOCOL, `bearer.${encoded}`];
}

function chatUrl() {
  const url = new URL("/v1/chat", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const session = sessionStorage.getItem(SESSION_KEY);
  if (session) url.searchParams.set("session_id", session);
  return url.href;
}

function bubble(role, text) {
  const node = h("div", { class: `turn ${role}`, dataset: { role } }, h("div", { class: "text" }, text));
  $("chat-log").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

function assistantTurn() {
  const node = bubble("assistant", "");
  node.dataset.state = "streaming";
  node.dataset.tokens = "0";
  const steps = h("ol", { class: "steps" });
  const evidence = h("ul", { class: "evidence" });
  node.prepend(steps, evidence); // what the answer rests on comes first, the answer after it
  return { bubble: node, text: node.querySelector(".text"), steps, evidence, tokens: 0, received: "" };
}

function finish(state, finalText, note) {
  if (!current) return;
  if (finalText !== undefined && finalText !== null) current.text.textContent = finalText;
  if (note) current.bubble.append(h("p", { class: "muted note" }, note));
  current.bubble.dataset.state = state;
  current = null;
  busy(false);
}

function describeStep(step) {
  const parts = [];
  for (const key of ["thought", "action", "tool", "arguments", "observation", "content"]) {
    if (step[key] === undefined || step[key] === null || step[key] === "") continue;
    const value = typeof step[key] === "string" ? step[key] : JSON.stringify(step[key]);
    parts.push(`${key}: ${value}`);
  }
  return parts.length ? parts.join(" · ") : JSON.stringify(step);
}

function onMessage(event) {
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    showError(new Error("the chat server sent something that is not JSON"));
    return;
  }
  switch (message.type) {
    case "session":
      // On connecting (a resumed session brings its history) and after a "session" frame.
      setSession(message.session_id);
      $("chat-log").replaceChildren();
      for (const turn of message.history || []) {
        bubble("user", turn.user);
        bubble("assistant", turn.assistant).dataset.state = "history";
      }
      break;
    case "token":
      if (!current) current = assistantTurn();
      current.received += message.text;
      current.text.textContent = current.received;
      current.tokens += 1;
      current.bubble.dataset.tokens = String(current.tokens);
      break;
    case "step":
      if (!current) current = assistantTurn();
      current.steps.append(h("li", { class: "step" }, describeStep(message)));
      break;
    case "evidence": {
      if (!current) current = assistantTurn();
      for (const item of message.items || []) {
        current.evidence.append(
          h("li", { dataset: { ref: item.ref ?? "" } }, h("code", {}, item.ref ?? item.source ?? ""), " ", item.text ?? ""),
        );
      }
      break;
    }
    case "done": {
      if (!current) current = assistantTurn();
      let note = "";
      if (!message.answer) note = message.stop_reason ? `no answer (the agent stopped: ${message.stop_reason})` : "no answer";
      else if (message.finish_reason === "length") note = "cut at the token budget";
      else if (message.finish_reason === "timeout") note = "cut at the time limit";
      finish("done", message.answer, note);
      break;
    }
    case "cancelled":
      if (current) current.bubble.append(h("p", { class: "muted" }, "cancelled"));
      finish("cancelled");
      break;
    case "error":
      if (current) current.bubble.append(h("p", { class: "error" }, message.detail));
      finish("error");
      showError(new Error(message.detail || "the chat failed"));
      break;
    default:
      break;
  }
}

function connect() {
  if (socket && socket.readyState === WebSocket.OPEN) return Promise.resolve(socket);
  if (opening) return opening;
  setState("connecting…");
  const attempt = new Promise((resolve, reject) => {
    const ws = new WebSocket(chatUrl(), protocols());
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      socket = ws;
      opening = null;
      setState("connected");
      resolve(ws);
    });
    ws.addEventListener("message", (event) => {
      if (socket === ws) onMessage(event);
    });
    ws.addEventListener("close", (event) => {
      if (!opened) {
        if (opening === attempt) opening = null;
        setState("disconnected");
        reject(new Error(`cannot open the chat (${event.reason || `closed with code ${event.code}`})`));
        return;
      }
      if (socket !== ws) return; // replaced (a new token): the new socket owns the page
      socket = null;
      setState(event.reason ? `disconnected: ${event.reason}` : "disconnected");
      if (current) {
        current.bubble.append(h("p", { class: "error" }, "connection closed"));
        finish("error");
      }
    });
  });
  opening = attempt;
  return attempt;
}

async function send(form) {
  const data = new FormData(form);
  const text = String(data.get("text") || "").trim();
  if (!text) return;
  showError(null);
  busy(true);
  try {
    const ws = await connect();
    bubble("user", text);
    current = assistantTurn();
    ws.send(JSON.stringify({ type: "message", text, mode: data.get("mode"), kb: data.get("kb") === "on" }));
    form.elements.text.value = "";
  } catch (error) {
    busy(false);
    showError(error);
  }
}

export function init() {
  const form = $("chat-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(form);
  });
  $("chat-cancel").addEventListener("click", () => {
    if (socket && current) socket.send(JSON.stringify({ type: "cancel" }));
  });
  $("chat-new").addEventListener("click", () => {
    setSession(null);
    $("chat-log").replaceChildren();
    // The server answers with the new session's id.
    if (socket && !current) socket.send(JSON.stringify({ type: "session", session_id: null }));
  });
  setSession(sessionStorage.getItem(SESSION_KEY));
  // A new token needs a new handshake: the next send (or opening the page) reconnects.
  window.addEventListener("mcp-gemma:token", () => {
    if (socket) socket.close(1000, "token changed");
  });
}

export function show() {
  return connect().catch((error) => showError(error));
}
