// convostore history browser: plain JS, no build step, talks only to this server's REST API.
//
// Rules this file keeps:
// - Data is put in the page with textContent / attributes only, never innerHTML, so a
//   stored "<script>" or "<img onerror>" shows as text.
// - Ids are opaque strings: compared as strings, put in URLs with encodeURIComponent.
// - Timestamps go through toDate(), which takes Unix seconds or an ISO string.
// - Any 4xx with error.message is shown; a 401 means "sign in again".
"use strict";

(function () {
  // The token lives in sessionStorage: it survives a reload of this tab but not closing it,
  // and is not shared with other tabs or written to disk the way localStorage is, so a
  // bearer token pasted here does not outlive the session it was pasted for.
  const TOKEN_KEY = "convostore.token";
  const RETURN_KEY = "convostore.return";
  const CONVERSATION_PAGE = 20;
  const MESSAGE_PAGE = 50;
  const SEARCH_PAGE = 20;
  const COLLAPSE_AT = 2000; // characters shown of a long message before "Show all"

  const main = document.getElementById("main");
  const statusBox = document.getElementById("status");
  const who = document.getElementById("who");
  const signoutButton = document.getElementById("signout");

  // ------------------------------------------------------------------ small helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function idOf(value) {
    return value === undefined || value === null ? "" : String(value);
  }

  function conversationHref(id) {
    return "#/c/" + encodeURIComponent(idOf(id));
  }

  // Unix seconds (number or numeric string) or an ISO 8601 string (UTC when it has no zone).
  function toDate(value) {
    if (value === undefined || value === null || value === "") return null;
    if (typeof value === "number" || /^\d+(\.\d+)?$/.test(String(value))) {
      return new Date(Number(value) * 1000);
    }
    let text = String(value);
    if (/T\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(text)) text += "Z";
    const date = new Date(text);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function timeEl(value) {
    const date = toDate(value);
    if (!date) return el("span", { text: "unknown time" });
    return el("time", { datetime: date.toISOString(), title: date.toISOString() },
      date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));
  }

  function plural(n, word) {
    return `${Number(n).toLocaleString()} ${word}${Number(n) === 1 ? "" : "s"}`;
  }

  function clearStatus() {
    statusBox.replaceChildren();
  }

  function showError(message) {
    statusBox.replaceChildren(el("p", { class: "alert", role: "alert", text: message }));
  }

  function showNote(message) {
    statusBox.replaceChildren(el("p", { class: "note", text: message }));
  }

  function focusHeading() {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: false });
    }
  }

  // ------------------------------------------------------------------ token and API

  function getToken() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function setToken(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  }

  function dropToken() {
    sessionStorage.removeItem(TOKEN_KEY);
  }

  // The user id in the token, for "Signed in as ..." only (the server decides who it is).
  function subjectOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
      return typeof claims.sub === "string" ? claims.sub : null;
    } catch (_err) {
      return null;
    }
  }

  class ApiError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  class SignedOut extends Error {}

  async function api(path, options) {
    const opts = options || {};
    const token = opts.token || getToken();
    if (!token) throw new SignedOut("not signed in");
    const headers = { Authorization: "Bearer " + token, Accept: "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method: opts.method || "GET",
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (_err) {
      throw new ApiError(0, "Cannot reach the server. Is convostore serve still running?");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_err) {
      data = null;
    }
    if (response.ok) return data;
    const error = data && typeof data === "object" ? data.error : null;
    const message =
      error && typeof error.message === "string" ? error.message : `request failed (HTTP ${response.status})`;
    if (response.status === 401 && !opts.token) {
      signOut("Your session has expired or the token was refused: sign in again.");
      throw new SignedOut(message);
    }
    throw new ApiError(response.status, message, error && error.code);
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
    }
    const text = search.toString();
    return text ? "?" + text : "";
  }

  function conversationPath(id) {
    return "/v1/conversations/" + encodeURIComponent(idOf(id));
  }

  // A failure in a view: a 401 has already sent the person to sign in; anything else is shown.
  function report(err) {
    if (err instanceof SignedOut) return;
    showError(err && err.message ? err.message : String(err));
  }

  // ------------------------------------------------------------------ sign in / out

  function signOut(reason) {
    dropToken();
    if (location.hash && !location.hash.startsWith("#/signin")) {
      sessionStorage.setItem(RETURN_KEY, location.hash);
    }
    renderHeader();
    renderSignIn(reason);
    if (location.hash !== "#/signin") history.replaceState(null, "", "#/signin");
  }

  function renderHeader() {
    const token = getToken();
    if (token) {
      const sub = subjectOf(token);
      who.textContent = sub ? `Signed in as ${sub}` : "Signed in";
      signoutButton.hidden = false;
    } else {
      who.textContent = "";
      signoutButton.hidden = true;
    }
  }

  async function acceptToken(token, errorBox) {
    try {
      // Checked against the API before it is kept: a bad token is refused here, not later.
      await api("/v1/conversations" + query({ limit: 1 }), { token });
    } catch (err) {
      errorBox.replaceChildren(el("p", { class: "alert", role: "alert",
        text: err.status === 401 ? `That token was refused: ${err.message}` : err.message }));
      return;
    }
    setToken(token);
    renderHeader();
    const back = sessionStorage.getItem(RETURN_KEY);
    sessionStorage.removeItem(RETURN_KEY);
    const target = back && !back.startsWith("#/signin") ? back : "#/";
    if (location.hash === target) route();
    else location.hash = target;
  }

  function renderSignIn(reason) {
    clearStatus();
    const errorBox = el("div", { id: "signin-error" });
    if (reason) errorBox.append(el("p", { class: "alert", role: "alert", text: reason }));
    const tokenInput = el("textarea", { id: "token", name: "token", required: true,
      autocomplete: "off", spellcheck: "false", "aria-describedby": "token-help" });
    const form = el("form", { class: "card stack", id: "token-form", onsubmit: (event) => {
      event.preventDefault();
      const token = tokenInput.value.trim().replace(/^Bearer\s+/i, "");
      if (token) acceptToken(token, errorBox);
    } },
      el("label", { for: "token", text: "Bearer token" }),
      tokenInput,
      el("p", { class: "note", id: "token-help",
        text: "A JWT for your user (e.g. from `convostore token --user alice`) or an API key. " +
          "It is kept in this tab only (sessionStorage) and sent only to this server's API." }),
      el("button", { type: "submit", class: "primary", text: "Sign in" }));
    const devSlot = el("div", { id: "dev-slot" });
    main.replaceChildren(el("h1", { text: "Sign in" }), errorBox, form, devSlot);
    tokenInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    offerDevToken(devSlot, errorBox);
    focusHeading();
  }

  // Only a server started with `convostore serve --dev` answers /ui/dev (404 otherwise).
  async function offerDevToken(slot, errorBox) {
    let available = false;
    try {
      const response = await fetch("dev", { cache: "no-store", credentials: "omit" });
      available = response.ok;
    } catch (_err) {
      available = false;
    }
    if (!available || !slot.isConnected) return;
    const userInput = el("input", { id: "dev-user", name: "user_id", type: "text", value: "alice",
      required: true, autocomplete: "off" });
    slot.replaceChildren(el("form", { class: "card stack", id: "dev-form", onsubmit: async (event) => {
      event.preventDefault();
      const userId = userInput.value.trim();
      if (!userId) return;
      try {
        const response = await fetch("dev-token", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ user_id: userId }),
          credentials: "omit",
        });
        const data = await response.json();
        if (!response.ok) throw new Error(data && data.error ? data.error.message : "refused");
        await acceptToken(data.token, errorBox);
      } catch (err) {
        errorBox.replaceChildren(el("p", { class: "alert", role: "alert", text: err.message }));
      }
    } },
      el("h2", { text: "Development mode" }),
      el("p", { class: "note", text: "This server runs with --dev: it mints a token for any user id." }),
      el("div", { class: "field" }, el("label", { for: "dev-user", text: "User id" }), userInput),
      el("button", { type: "submit", class: "primary", text: "Sign in as this user" })));
  }

  // ------------------------------------------------------------------ conversation list

  function conversationItem(conv) {
    const title = conv.title && conv.title.trim() ? conv.title : "(untitled)";
    return el("li", { "data-id": idOf(conv.id) },
      el("a", { href: conversationHref(conv.id), class: "conv-link" }, title),
      el("div", { class: "meta" },
        el("span", { class: "count", text: plural(conv.message_count || 0, "message") }),
        " · last activity ", timeEl(conv.updated_at)));
  }

  function searchForm(initial) {
    const input = el("input", { id: "search-q", name: "q", type: "search", value: initial || "",
      required: true, autocomplete: "off" });
    return el("form", { class: "row", role: "search", id: "search-form", onsubmit: (event) => {
      event.preventDefault();
      const q = input.value.trim();
      if (q) location.hash = "#/search" + query({ q });
    } },
      el("label", { for: "search-q", text: "Search messages" }),
      input,
      el("button", { type: "submit", text: "Search" }));
  }

  async function renderList() {
    clearStatus();
    const list = el("ul", { class: "conversations", id: "conversations" });
    const more = el("button", { type: "button", id: "load-more-conversations", hidden: true,
      text: "Load more conversations" });
    const empty = el("p", { class: "note", id: "no-conversations", hidden: true,
      text: "No conversations yet for this user." });
    main.replaceChildren(el("h1", { text: "Conversations" }), searchForm(""),
      el("p", { class: "note", text: "Most recently active first." }), empty, list,
      el("div", { class: "more" }, more));
    focusHeading();
    await pages(more, (after) => "/v1/conversations" + query({ limit: CONVERSATION_PAGE, after }),
      (page) => {
        const first = list.children.length;
        for (const conv of page.data || []) list.append(conversationItem(conv));
        empty.hidden = list.children.length > 0;
        if (first > 0 && list.children[first]) list.children[first].querySelector("a").focus();
      });
  }

  // Keyset pages behind a "more" button: the first page now, the next one per click
  // (the button disabled meanwhile, hidden once there is no next cursor).
  async function pages(more, pathFor, show) {
    let cursor = null;
    async function loadPage() {
      more.disabled = true;
      try {
        const page = await api(pathFor(cursor));
        show(page);
        cursor = page.next_cursor;
        more.hidden = !(page.has_more && cursor);
      } catch (err) {
        report(err);
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener("click", loadPage);
    await loadPage();
  }

  // ------------------------------------------------------------------ search

  // A snippet marks each match between ** (e.g. "the **pasta** recipe").
  function snippetEl(snippet) {
    const node = el("p", { class: "snippet" });
    String(snippet || "").split("**").forEach((part, i) => {
      node.append(i % 2 === 1 ? el("mark", { text: part }) : document.createTextNode(part));
    });
    return node;
  }

  async function renderSearch(q) {
    clearStatus();
    const hits = el("ol", { class: "hits", id: "hits" });
    const more = el("button", { type: "button", id: "load-more-hits", hidden: true, text: "More results" });
    const none = el("p", { class: "note", id: "no-hits", hidden: true, text: "Nothing matches." });
    main.replaceChildren(
      el("p", {}, el("a", { href: "#/", text: "← All conversations" })),
      el("h1", { text: `Search: ${q}` }), searchForm(q), none, hits, el("div", { class: "more" }, more));
    focusHeading();
    await pages(more, (after) => "/v1/search" + query({ q, limit: SEARCH_PAGE, after }), (page) => {
      for (const hit of page.data || []) {
        const title = hit.conversation_title && hit.conversation_title.trim()
          ? hit.conversation_title : "(untitled)";
        const role = hit.kind === "title" ? "title" : hit.message ? hit.message.role : "";
        hits.append(el("li", {},
          el("a", { href: conversationHref(hit.conversation_id), class: "hit-link" }, title),
          el("span", { class: "meta" }, " · ", role === "title" ? "title match" : `${role} message`),
          snippetEl(hit.snippet)));
      }
      none.hidden = hits.children.length > 0;
    });
  }

  // ------------------------------------------------------------------ one conversation

  function renderNotFound(message) {
    clearStatus();
    main.replaceChildren(
      el("h1", { text: "Conversation not found" }),
      el("p", { class: "alert", role: "alert", id: "not-found",
        text: message || "There is no such conversation for this user." }),
      el("p", {}, el("a", { href: "#/", text: "← All conversations" })));
    focusHeading();
  }

  function contentEl(text, expanded, onExpand) {
    const value = text === undefined || text === null ? "" : String(text);
    if (value === "") return el("div", { class: "content empty", text: "(no text)" });
    if (value.length <= COLLAPSE_AT || expanded) return el("div", { class: "content", text: value });
    const box = el("div", { class: "content collapsed" });
    box.append(document.createTextNode(value.slice(0, COLLAPSE_AT) + "…"));
    const wrap = el("div", {}, box);
    wrap.append(el("button", { type: "button", class: "link show-all", onclick: (event) => {
      box.classList.remove("collapsed");
      box.textContent = value;
      onExpand();
      event.currentTarget.remove();
      box.setAttribute("tabindex", "-1");
      box.focus();
    } }, `Show all (${value.length.toLocaleString()} characters)`));
    return wrap;
  }

  function jsonEl(value) {
    let text;
    try {
      text = JSON.stringify(value, null, 2);
    } catch (_err) {
      text = String(value);
    }
    return el("pre", { text });
  }

  function callName(call) {
    if (call && call.function && typeof call.function.name === "string") return call.function.name;
    if (call && typeof call.name === "string") return call.name;
    return "tool";
  }

  function callArguments(call) {
    const raw = call && call.function ? call.function.arguments : call ? call.arguments : undefined;
    if (typeof raw === "string") {
      try {
        return JSON.stringify(JSON.parse(raw), null, 2);
      } catch (_err) {
        return raw;
      }
    }
    return raw === undefined ? "" : JSON.stringify(raw, null, 2);
  }

  function conversationView(id) {
    const state = {
      id: idOf(id),
      conv: null,
      messages: [], // loaded, ascending by position
      hasOlder: false,
      olderCursor: null,
      expanded: new Set(), // message ids whose long text is shown in full
      openCalls: new Set(), // tool call ids expanded
      window: null, // the last history window asked for
    };

    const title = el("h1", { id: "conv-title" });
    const info = el("p", { class: "meta", id: "conv-info" });
    const convMeta = el("div", { class: "details-only", id: "conv-metadata" });
    const list = el("ol", { class: "messages", id: "messages", "aria-label": "Messages, oldest first" });
    const older = el("button", { type: "button", id: "load-older", hidden: true, text: "Load older messages" });
    const windowSummary = el("p", { class: "window-summary", id: "window-summary", "aria-live": "polite" });
    const container = el("div", { id: "conversation" });

    // Rename
    const titleInput = el("input", { id: "rename-title", name: "title", type: "text", autocomplete: "off" });
    const renameForm = el("form", { class: "row", id: "rename-form", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const value = titleInput.value.trim();
        state.conv = await api(conversationPath(state.id), {
          method: "PATCH", body: { title: value === "" ? null : value } });
        renderHead();
        showNote("Renamed.");
      } catch (err) {
        report(err);
      }
    } },
      el("label", { for: "rename-title", text: "Title" }), titleInput,
      el("button", { type: "submit", text: "Rename" }));

    // Delete, confirmed inline (a native confirm() is easy to dismiss by accident).
    const confirmBox = el("div", { class: "confirm", id: "delete-confirm", hidden: true });
    const deleteButton = el("button", { type: "button", class: "danger", id: "delete",
      text: "Delete conversation", onclick: () => {
        const count = state.conv ? state.conv.message_count || 0 : 0;
        const yes = el("button", { type: "button", class: "danger primary", id: "delete-yes",
          text: "Yes, delete it", onclick: async () => {
            try {
              await api(conversationPath(state.id), { method: "DELETE" });
              sessionStorage.setItem("convostore.flash", `Deleted “${state.conv && state.conv.title ? state.conv.title : "(untitled)"}”.`);
              location.hash = "#/";
            } catch (err) {
              report(err);
            }
          } });
        const no = el("button", { type: "button", id: "delete-no", text: "Cancel", onclick: () => {
          confirmBox.hidden = true;
          deleteButton.focus();
        } });
        confirmBox.replaceChildren(
          el("p", { text: `Delete this conversation and its ${plural(count, "message")}? This cannot be undone.` }),
          el("div", { class: "row" }, yes, no));
        confirmBox.hidden = false;
        yes.focus();
      } });

    // Details toggle: metadata, positions, ids on demand.
    const detailsToggle = el("input", { type: "checkbox", id: "show-details", onchange: () => {
      container.classList.toggle("show-details", detailsToggle.checked);
    } });

    // History window
    const budgetInput = el("input", { id: "budget", name: "max_tokens", type: "number", min: "0",
      step: "1", value: "4000", required: true, inputmode: "numeric" });
    const windowForm = el("form", { class: "row", id: "window-form", onsubmit: async (event) => {
      event.preventDefault();
      const budget = Number(budgetInput.value);
      if (!Number.isInteger(budget) || budget < 0) {
        showError("Token budget: a whole number of tokens, 0 or more.");
        return;
      }
      try {
        const data = await api(conversationPath(state.id) + "/history", {
          method: "POST", body: { max_tokens: budget } });
        state.window = { budget, messages: (data && data.messages) || [] };
        clearStatus();
        renderMessages();
        const first = list.querySelector(".in-window");
        if (first) first.scrollIntoView({ block: "nearest" });
      } catch (err) {
        report(err);
      }
    } },
      el("div", { class: "field" }, el("label", { for: "budget", text: "Token budget" }), budgetInput),
      el("button", { type: "submit", id: "show-window", text: "Highlight the model's window" }),
      el("button", { type: "button", id: "clear-window", text: "Clear", onclick: () => {
        state.window = null;
        renderMessages();
      } }));

    container.append(
      el("p", {}, el("a", { href: "#/", text: "← All conversations" })),
      el("div", { class: "conv-head" }, title),
      info,
      el("div", { class: "card stack" },
        el("div", { class: "tools-bar" }, renameForm,
          el("div", { class: "stack" }, deleteButton, confirmBox)),
        el("div", { class: "row" }, detailsToggle,
          el("label", { for: "show-details", text: "Show metadata and positions" })),
        windowForm, windowSummary),
      convMeta,
      el("div", { class: "more" }, older),
      list);

    function renderHead() {
      const conv = state.conv;
      const name = conv.title && conv.title.trim() ? conv.title : "(untitled)";
      title.textContent = name;
      document.title = `${name}: convostore`;
      titleInput.value = conv.title || "";
      info.replaceChildren(
        el("span", { id: "conv-count", text: plural(conv.message_count || 0, "message") }),
        " · started ", timeEl(conv.created_at), " · last activity ", timeEl(conv.updated_at));
      convMeta.replaceChildren(
        el("h2", { text: "Conversation details" }),
        jsonEl({ id: conv.id, external_id: conv.external_id, metadata: conv.metadata,
          temporary: conv.temporary, hold: conv.hold, retention: conv.retention,
          expires_at: conv.expires_at }));
    }

    // The window's messages are the stored ones minus what the window leaves out (a reply
    // still streaming, unanswered or orphaned tool messages), in order: match them from the
    // newest back, by role, text and tool_call_id.
    function windowMarks() {
      if (!state.window) return { marked: new Set(), missing: 0 };
      const wanted = state.window.messages;
      const marked = new Set();
      let i = wanted.length - 1;
      for (let j = state.messages.length - 1; j >= 0 && i >= 0; j--) {
        const have = state.messages[j];
        const want = wanted[i];
        if (want.role === have.role && (want.content || "") === (have.content || "") &&
            idOf(want.tool_call_id) === idOf(have.tool_call_id)) {
          marked.add(idOf(have.id));
          i--;
        }
      }
      return { marked, missing: i + 1 };
    }

    function messageHead(msg, inWindow, label) {
      const status = msg.status && msg.status !== "complete" ? msg.status : null;
      return el("div", { class: "msg-head" },
        el("span", { class: "role", text: label || msg.role }),
        el("span", { class: "details-only position", text: `#${msg.position}` }),
        timeEl(msg.created_at),
        status ? el("span", { class: "badge status", text: status }) : null,
        inWindow ? el("span", { class: "badge window", text: "in window" }) : null);
    }

    function messageDetails(msg) {
      return el("div", { class: "details-only" }, jsonEl({ id: msg.id, position: msg.position,
        key: msg.key, metadata: msg.metadata, tool_call_id: msg.tool_call_id, status: msg.status }));
    }

    function messageBody(msg) {
      return contentEl(msg.content, state.expanded.has(idOf(msg.id)), () => state.expanded.add(idOf(msg.id)));
    }

    function renderMessages() {
      const { marked, missing } = windowMarks();
      // Tool results grouped under the assistant message that called them.
      const results = new Map();
      const grouped = new Set();
      const callIds = new Set();
      for (const msg of state.messages) {
        if (msg.role === "assistant" && Array.isArray(msg.tool_calls)) {
          for (const call of msg.tool_calls) if (call && call.id !== undefined) callIds.add(idOf(call.id));
        }
      }
      for (const msg of state.messages) {
        const callId = idOf(msg.tool_call_id);
        if (msg.role === "tool" && callId && callIds.has(callId)) {
          if (!results.has(callId)) results.set(callId, []);
          results.get(callId).push(msg);
          grouped.add(idOf(msg.id));
        }
      }
      const items = [];
      for (const msg of state.messages) {
        if (grouped.has(idOf(msg.id))) continue;
        const inWindow = marked.has(idOf(msg.id));
        const item = el("li", { class: `msg role-${msg.role}${inWindow ? " in-window" : ""}`,
          "data-position": String(msg.position), "data-id": idOf(msg.id) },
          messageHead(msg, inWindow, msg.role === "tool" ? "tool result" : null),
          messageBody(msg), messageDetails(msg));
        if (msg.role === "assistant" && Array.isArray(msg.tool_calls)) {
          for (const call of msg.tool_calls) {
            const callId = idOf(call && call.id);
            const answers = results.get(callId) || [];
            const anyInWindow = answers.some((r) => marked.has(idOf(r.id)));
            const details = el("details", { class: "tool-call", "data-call-id": callId,
              open: state.openCalls.has(callId) },
              el("summary", {}, `Tool call ${callName(call)}`,
                answers.length ? ` · ${plural(answers.length, "result")}` : " · no result stored",
                anyInWindow ? " · in window" : ""),
              el("div", { class: "tool-body" },
                el("div", { class: "meta", text: `call id ${callId || "(none)"}` }),
                el("div", { class: "meta", text: "arguments" }),
                el("pre", { class: "arguments", text: callArguments(call) }),
                ...answers.map((r) => {
                  const resultInWindow = marked.has(idOf(r.id));
                  return el("div", { class: `tool-result msg-like role-tool${resultInWindow ? " in-window" : ""}`,
                    "data-position": String(r.position), "data-id": idOf(r.id) },
                    messageHead(r, resultInWindow, "tool result"), messageBody(r), messageDetails(r));
                })));
            details.addEventListener("toggle", () => {
              if (details.open) state.openCalls.add(callId);
              else state.openCalls.delete(callId);
            });
            item.append(details);
          }
        }
        items.push(item);
      }
      if (items.length === 0) items.push(el("li", { class: "note", id: "no-messages", text: "No messages yet." }));
      list.replaceChildren(...items);
      older.hidden = !state.hasOlder;
      if (!state.window) {
        windowSummary.textContent = "";
      } else {
        const n = state.window.messages.length;
        let text = `With ${state.window.budget.toLocaleString()} tokens the model gets ${plural(n, "message")}` +
          (n ? ", highlighted." : ".");
        if (missing > 0) {
          text += state.hasOlder
            ? ` ${plural(missing, "message")} of it ${missing === 1 ? "is" : "are"} older than those shown: load older messages to see ${missing === 1 ? "it" : "them"}.`
            : ` ${plural(missing, "message")} of it could not be matched to a stored message.`;
        }
        windowSummary.textContent = text;
      }
    }

    async function loadOlder() {
      older.disabled = true;
      try {
        const page = await api(conversationPath(state.id) + "/messages" +
          query({ order: "desc", limit: MESSAGE_PAGE, before: state.olderCursor }));
        const batch = (page.data || []).slice().reverse();
        state.messages = batch.concat(state.messages);
        state.hasOlder = Boolean(page.has_more && page.next_cursor !== null && page.next_cursor !== undefined);
        state.olderCursor = page.next_cursor;
        renderMessages();
        return true;
      } catch (err) {
        report(err);
        return false;
      } finally {
        older.disabled = false;
      }
    }
    older.addEventListener("click", loadOlder);

    async function start() {
      clearStatus();
      main.replaceChildren(el("h1", { text: "Loading…" }));
      try {
        state.conv = await api(conversationPath(state.id));
      } catch (err) {
        if (err instanceof ApiError && (err.status === 404 || err.status === 422 || err.status === 400)) {
          renderNotFound(err.status === 404 ? null : `Not a conversation id here: ${err.message}`);
          return;
        }
        report(err);
        return;
      }
      main.replaceChildren(container);
      renderHead();
      await loadOlder();
      focusHeading();
    }

    return { start };
  }

  // ------------------------------------------------------------------ routing

  let routeSeq = 0;

  async function route() {
    const seq = ++routeSeq;
    const hash = location.hash || "#/";
    renderHeader();
    if (hash.startsWith("#/signin")) {
      if (getToken()) {
        location.hash = "#/";
        return;
      }
      renderSignIn(null);
      return;
    }
    if (!getToken()) {
      sessionStorage.setItem(RETURN_KEY, hash);
      history.replaceState(null, "", "#/signin");
      renderSignIn(null);
      return;
    }
    const flash = sessionStorage.getItem("convostore.flash");
    sessionStorage.removeItem("convostore.flash");
    const conv = /^#\/c\/([^/?]+)$/.exec(hash);
    const search = /^#\/search(\?.*)?$/.exec(hash);
    try {
      if (conv) {
        let id;
        try {
          id = decodeURIComponent(conv[1]);
        } catch (_err) {
          renderNotFound();
          return;
        }
        await conversationView(id).start();
      } else if (search) {
        const q = new URLSearchParams(search[1] || "").get("q") || "";
        if (q.trim()) await renderSearch(q.trim());
        else await renderList();
      } else {
        await renderList();
      }
    } catch (err) {
      report(err);
    }
    if (flash && seq === routeSeq) showNote(flash);
  }

  signoutButton.addEventListener("click", () => {
    dropToken();
    sessionStorage.removeItem(RETURN_KEY);
    location.hash = "#/signin";
  });
  window.addEventListener("hashchange", route);
  route();
})();
