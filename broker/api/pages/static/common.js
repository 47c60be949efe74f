// Shared by the resident's and the auditor's pages: messages and language, sign-in with a
// bearer token, API calls whose errors (RFC 9457 problem details) are always shown, a small
// DOM helper, an in-page confirmation dialog and authenticated downloads.
// Plain JavaScript, no framework and no build step: the page's CSP admits only these files.
"use strict";

(function () {
  const page = document.body.dataset.page;
  const TOKEN_KEY = "tsunagu.token." + page;
  const LANG_KEY = "tsunagu.lang";
  const LANGS = ["ja", "en"];

  // Take the token out of the address bar before anything else: a fragment never reaches a
  // server, but it stays in the history and could be copied along with the URL.
  function captureToken() {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    const token = fragment.get("token");
    if (!token) return false;
    sessionStorage.setItem(TOKEN_KEY, token.trim());
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return true;
  }
  captureToken();
  // A link with another token, followed while the page is open, changes only the fragment:
  // start afresh as that user rather than go on showing the previous one's data.
  window.addEventListener("hashchange", () => {
    if (captureToken()) window.location.reload();
  });

  let messages = { ja: {}, en: {} };
  let lang = "ja";
  const langListeners = [];

  function initialLang() {
    const asked = new URLSearchParams(window.location.search).get("lang");
    if (LANGS.includes(asked)) {
      localStorage.setItem(LANG_KEY, asked);
      return asked;
    }
    const kept = localStorage.getItem(LANG_KEY);
    return LANGS.includes(kept) ? kept : "ja";
  }

  /** The message ``key`` in the current language, with ``{name}`` placeholders filled. */
  function t(key, vars) {
    let text = messages[lang][key];
    if (text === undefined) text = messages.ja[key];
    if (text === undefined) return key;
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, (whole, name) =>
        vars[name] === undefined || vars[name] === null ? whole : String(vars[name]),
      );
    }
    return text;
  }

  /** A message if the catalogue has one for ``key``, else ``fallback`` (codes from the API). */
  function tOr(key, fallback) {
    return messages[lang][key] !== undefined ? messages[lang][key] : fallback;
  }

  /** The name of a catalogue entry (``name_ja`` / ``name_en``) in the current language. */
  function nameOf(entry, fallback) {
    if (!entry) return fallback;
    return (lang === "en" ? entry.name_en : entry.name_ja) || entry.name_ja || fallback;
  }

  function applyI18n(root) {
    const scope = root || document;
    scope.querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = t(el.dataset.i18n);
    });
    scope.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
    });
    scope.querySelectorAll("[data-i18n-aria-label]").forEach((el) => {
      el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
    });
    scope.querySelectorAll("[data-i18n-title]").forEach((el) => {
      el.setAttribute("title", t(el.dataset.i18nTitle));
    });
  }

  function setLang(next) {
    if (!LANGS.includes(next)) return;
    lang = next;
    localStorage.setItem(LANG_KEY, next);
    // Keep ?lang= in step, so a reload or a shared link shows what is on screen now.
    const url = new URL(window.location.href);
    if (url.searchParams.has("lang")) {
      url.searchParams.set("lang", next);
      history.replaceState(null, "", url.pathname + url.search);
    }
    document.documentElement.lang = next;
    document.title = t(page + ".title");
    applyI18n(document);
    document.querySelectorAll("[data-lang]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.lang === next));
    });
    langListeners.forEach((listener) => listener(next));
  }

  /** Build an element: ``el("p", {class: "x", dataset: {a: 1}, onclick: f}, "text", child)``. */
  function el(tag, attrs, ...children) {
    const svg = ["svg", "g", "path", "rect", "text", "title", "line", "circle", "tspan"];
    const node = svg.includes(tag)
      ? document.createElementNS("http://www.w3.org/2000/svg", tag)
      : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "dataset") {
        for (const [key, v] of Object.entries(value)) node.dataset[key] = String(v);
      } else if (name.startsWith("on") && typeof value === "function") {
        node.addEventListener(name.slice(2), value);
      } else if (name === "text") {
        node.textContent = String(value);
      } else {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A table with translated column headers, or the ``empty`` message when there are no rows. */
  function dataTable(headers, rows, empty) {
    if (rows.length === 0) return el("p", { class: "empty" }, t(empty));
    return el(
      "table",
      {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, t(h))))),
      el("tbody", {}, rows),
    );
  }

  // Dates are shown in the region's time (JST), whatever the viewer's machine is set to.
  function fmtDate(iso, withTime) {
    if (!iso) return "—";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    // "2026/11/26" in Japanese; "26 Nov 2026" in English, which no reader takes for 11 Dec.
    const month = lang === "en" ? "short" : "2-digit";
    const options = { timeZone: "Asia/Tokyo", year: "numeric", month, day: "2-digit" };
    if (withTime !== false) {
      Object.assign(options, { hour: "2-digit", minute: "2-digit", hour12: false });
    }
    return new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "ja-JP", options).format(date);
  }

  function fmtNumber(n) {
    return new Intl.NumberFormat(lang === "en" ? "en-GB" : "ja-JP").format(n);
  }

  // ----- alerts and status -------------------------------------------------------------

  function alerts() {
    return document.getElementById("alerts");
  }

  function clearAlerts() {
    alerts().replaceChildren();
  }

  // Every problem the API answers has a typed kind, `urn:tsunagu:problem:<kind>`; the
  // catalogue words each kind in both languages (a test holds it to the API's kinds).
  const PROBLEM_URN = "urn:tsunagu:problem:";

  /** The catalogue's title and detail for the problem's kind, or null for a kind it lacks. */
  function problemText(problem) {
    const type = problem && typeof problem.type === "string" ? problem.type : "";
    if (!type.startsWith(PROBLEM_URN)) return null;
    const kind = type.slice(PROBLEM_URN.length);
    const title = messages[lang]["problem." + kind + ".title"];
    const detail = messages[lang]["problem." + kind + ".detail"];
    return title === undefined || detail === undefined ? null : { kind, title, detail };
  }

  // The error each alert shows, so that a change of language can word it again.
  const alertErrors = new WeakMap();

  /** An alert for ``error``: a problem's title and detail, or why the call failed. */
  function alertNode(error) {
    let title;
    let detail = "";
    let apiWords = "";
    let kind = "";
    if (error instanceof ApiError) {
      const own = problemText(error.problem);
      if (own) {
        // In the reader's language; the API's own (English) detail stays at hand, folded.
        ({ kind, title, detail } = own);
        apiWords = error.problem.detail || "";
      } else {
        // A kind the catalogue does not know: the API's own title and detail.
        title = error.problem && error.problem.title ? error.problem.title : t("error.http", error);
        if (error.problem && error.problem.detail) detail = error.problem.detail;
        else if (error.problem && error.problem.title) detail = t("error.status", error);
      }
    } else if (error instanceof UserError) {
      title = error.message;
    } else {
      title = t("error.network");
      detail = error && error.message ? error.message : "";
    }
    const item = el(
      "div",
      { class: "alert", dataset: { status: error && error.status ? error.status : "", kind } },
      el(
        "div",
        { class: "alert-body" },
        el("strong", { class: "alert-title" }, title),
        detail ? el("p", { class: "alert-detail" }, detail) : null,
        apiWords
          ? el(
              "details",
              { class: "alert-api" },
              el("summary", {}, t("error.api_words")),
              el("p", { class: "alert-api-detail", lang: "en" }, apiWords),
            )
          : null,
      ),
      el("button", {
        type: "button",
        class: "alert-dismiss",
        "aria-label": t("common.dismiss"),
        text: "×",
        onclick: () => item.remove(),
      }),
    );
    alertErrors.set(item, error);
    return item;
  }

  /** Show an error to the user (see ``alertNode``). */
  function showError(error) {
    // The newest error first; older ones stay until dismissed or the next user action.
    alerts().prepend(alertNode(error));
    while (alerts().children.length > 4) alerts().lastElementChild.remove();
    if (error instanceof ApiError && error.status === 401) {
      signOut(true);
    }
  }

  /** Word the alerts on screen again, in the language now chosen. */
  function rewordAlerts() {
    for (const item of [...alerts().children]) {
      const error = alertErrors.get(item);
      if (error !== undefined) item.replaceWith(alertNode(error));
    }
  }

  function announce(message) {
    const status = document.getElementById("status");
    status.textContent = message;
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || "HTTP " + status);
      this.status = status;
      this.problem = problem;
    }
  }

  class UserError extends Error {}

  // ----- API ---------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  /** Call the API with the bearer token; JSON back, or an ApiError carrying the problem. */
  async function api(path, options) {
    const opts = options || {};
    const url = new URL(path, window.location.origin);
    for (const [key, value] of Object.entries(opts.params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
    }
    const headers = { Accept: opts.accept || "application/json, application/problem+json" };
    const current = token();
    if (current && opts.auth !== false) headers.Authorization = "Bearer " + current;
    let body;
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    const response = await fetch(url, {
      method: opts.method || "GET",
      headers,
      body,
      credentials: "omit",
      cache: "no-store",
    });
    if (!response.ok) {
      let problem = null;
      try {
        problem = await response.json();
      } catch (_) {
        problem = null;
      }
      throw new ApiError(response.status, problem);
    }
    if (opts.raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  function filenameOf(response, fallback) {
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="?([^";]+)"?/.exec(disposition);
    return match ? match[1] : fallback;
  }

  /** Fetch ``path`` with the token and save it as a file (a link cannot carry the header). */
  async function download(path, options, fallbackName) {
    const response = await api(path, Object.assign({}, options, { raw: true }));
    const blob = await response.blob();
    const name = filenameOf(response, fallbackName);
    const href = URL.createObjectURL(blob);
    const link = el("a", { href, download: name, class: "visually-hidden" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
    return name;
  }

  // ----- confirmation dialog -----------------------------------------------------------

  /** Ask in an in-page dialog; resolves true when the user confirms. */
  function confirmDialog(title, text, confirmLabel) {
    const dialog = document.getElementById("confirm");
    dialog.querySelector("#confirm-title").textContent = title;
    dialog.querySelector("#confirm-text").textContent = text;
    const ok = dialog.querySelector("#confirm-ok");
    const cancel = dialog.querySelector("#confirm-cancel");
    ok.textContent = confirmLabel;
    cancel.textContent = t("common.cancel");
    return new Promise((resolve) => {
      function finish(answer) {
        ok.removeEventListener("click", onOk);
        cancel.removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        dialog.close();
        resolve(answer);
      }
      function onOk() {
        finish(true);
      }
      function onCancel(event) {
        if (event) event.preventDefault();
        finish(false);
      }
      ok.addEventListener("click", onOk);
      cancel.addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      dialog.showModal();
      // The safe choice has the focus: Enter does not destroy anything.
      cancel.focus();
    });
  }

  // ----- sign-in -----------------------------------------------------------------------

  function claims() {
    const current = token();
    if (!current) return null;
    try {
      const part = current.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (_) {
      return null;
    }
  }

  let onSignedIn = null;

  function showSignedIn() {
    const signedIn = Boolean(token());
    document.getElementById("sign-in").hidden = signedIn;
    document.getElementById("app").hidden = !signedIn;
    document.getElementById("sign-out").hidden = !signedIn;
    const who = document.getElementById("whoami");
    const seen = claims();
    who.textContent = signedIn && seen && seen.sub ? t("auth.signed_in_as", { sub: seen.sub }) : "";
  }

  function signOut(expired) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedIn();
    if (expired) {
      announce(t("auth.again"));
    } else {
      announce(t("auth.signed_out"));
    }
    document.getElementById("token-input").focus();
  }

  function wireChrome() {
    document.querySelectorAll("[data-lang]").forEach((button) => {
      button.addEventListener("click", () => setLang(button.dataset.lang));
    });
    document.getElementById("sign-out").addEventListener("click", () => {
      clearAlerts();
      signOut(false);
    });
    document.getElementById("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      clearAlerts();
      const input = document.getElementById("token-input");
      const value = input.value.trim();
      if (!value) {
        showError(new UserError(t("auth.empty")));
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, value);
      input.value = "";
      showSignedIn();
      if (onSignedIn) onSignedIn();
    });
    onLangChange(showSignedIn);
    onLangChange(rewordAlerts);
  }

  function onLangChange(listener) {
    langListeners.push(listener);
  }

  /** Load the messages, set the language, wire sign-in; ``ready()`` runs once signed in. */
  async function start(ready) {
    try {
      const response = await fetch("/pages/static/messages.json", { cache: "no-cache" });
      messages = await response.json();
    } catch (error) {
      // Without the catalogue the page still works, with message keys as its text.
      messages = { ja: {}, en: {} };
    }
    wireChrome();
    onSignedIn = ready;
    setLang(initialLang());
    showSignedIn();
    document.body.classList.remove("loading");
    try {
      if (token()) {
        await ready();
      } else {
        document.getElementById("token-input").focus();
      }
    } catch (error) {
      showError(error);
    } finally {
      // Tests and scripts wait for this: the first load has finished, well or not.
      document.body.dataset.ready = "true";
    }
  }

  /** Run a user action: clear old errors, show any new one; true when it succeeded. */
  async function act(work) {
    clearAlerts();
    announce("");
    try {
      await work();
      return true;
    } catch (error) {
      showError(error);
      return false;
    }
  }

  window.Tsunagu = {
    ApiError,
    UserError,
    act,
    announce,
    api,
    claims,
    clearAlerts,
    confirmDialog,
    dataTable,
    download,
    el,
    fmtDate,
    fmtNumber,
    lang: () => lang,
    nameOf,
    onLangChange,
    showError,
    start,
    t,
    tOr,
    token,
  };
})();
