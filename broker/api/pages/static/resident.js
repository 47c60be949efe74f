// The resident's page: my consents (pause, resume, revoke, receipts), granting a consent,
// who read my data, the history of my consents, the services linked with my region ID
// (link with a code, end a link), and erasure. Everything goes through
// /v1/me with the resident's bearer token; the catalogues give partners', purposes' and
// categories' names in both languages.
"use strict";

(function () {
  const {
    act,
    announce,
    api,
    confirmDialog,
    dataTable,
    download,
    el,
    fmtDate,
    nameOf,
    showError,
    t,
    tOr,
  } = window.Tsunagu;

  const state = {
    partners: new Map(),
    purposes: new Map(),
    categories: new Map(),
    consents: null,
    history: null,
    reads: null,
    readsCursor: null, // the tracker's next page (older reads), null after the oldest
    grantable: null, // the categories the API says I may consent to (null until known)
    links: null, // the services linked with my region ID (null until known; [] where none)
    erasure: null,
  };

  const STATUS_ORDER = { active: 0, paused: 1, expired: 2, revoked: 3 };

  // ----- names -------------------------------------------------------------------------

  function partnerName(id) {
    return nameOf(state.partners.get(id), id);
  }

  function purposeName(code) {
    return nameOf(state.purposes.get(code), code);
  }

  function categoryName(code) {
    return nameOf(state.categories.get(code), code);
  }

  function chips(codes) {
    return el(
      "ul",
      { class: "chips" },
      codes.map((code) => el("li", { class: "chip", title: code }, categoryName(code))),
    );
  }

  function shortId(id) {
    return el("code", { class: "id", title: id }, id.length > 14 ? id.slice(0, 12) + "…" : id);
  }

  function badge(status) {
    return el("span", { class: "badge status-" + status, dataset: { status } }, t("status." + status));
  }

  // ----- loading -----------------------------------------------------------------------

  async function loadCatalogue() {
    // Public documents: no token needed, and a bad token must not hide the names.
    const [partners, purposes, categories] = await Promise.all([
      api("/v1/catalogue/partners", { auth: false }),
      api("/v1/catalogue/purposes", { auth: false }),
      api("/v1/catalogue/categories", { auth: false }),
    ]);
    state.partners = new Map(partners.map((p) => [p.id, p]));
    state.purposes = new Map(purposes.map((p) => [p.code, p]));
    state.categories = new Map(categories.map((c) => [c.code, c]));
  }

  async function loadMine() {
    const results = await Promise.allSettled([
      api("/v1/me/consents"),
      api("/v1/me/consents/history"),
      fetchReads(null),
      api("/v1/me/consents/categories"),
      api("/v1/me/links"),
    ]);
    const [consents, history, reads, grantable, links] = results;
    if (links.status === "fulfilled") state.links = links.value;
    else if (links.reason && links.reason.status === 404) {
      // No region ID here (the platform trusts an external provider): no links, no error.
      state.links = [];
      results.splice(results.indexOf(links), 1);
    }
    if (grantable.status === "fulfilled") state.grantable = new Set(grantable.value);
    state.consents = consents.status === "fulfilled" ? consents.value : state.consents;
    state.history = history.status === "fulfilled" ? history.value : state.history;
    if (reads.status === "fulfilled") {
      state.reads = reads.value.reads;
      state.readsCursor = reads.value.next_cursor;
    }
    // One failure explains them all (the same token): show the first.
    const failed = results.find((r) => r.status === "rejected");
    if (failed) showError(failed.reason);
    render();
  }

  // ----- consents ----------------------------------------------------------------------

  function renderConsents() {
    const box = document.getElementById("consents");
    box.removeAttribute("aria-busy");
    if (state.consents === null) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    if (state.consents.length === 0) {
      box.replaceChildren(el("p", { class: "empty" }, t("consents.empty")));
      return;
    }
    const sorted = [...state.consents].sort(
      (a, b) =>
        (STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9) ||
        b.created_at.localeCompare(a.created_at),
    );
    box.replaceChildren(...sorted.map(consentCard));
  }

  function consentCard(consent) {
    const actions = [];
    if (consent.status === "active") {
      actions.push(actionButton(consent, "pause", "consents.pause", "quiet"));
    }
    if (consent.status === "paused") {
      actions.push(actionButton(consent, "resume", "consents.resume", "quiet"));
    }
    if (consent.status === "active" || consent.status === "paused") {
      actions.push(actionButton(consent, "revoke", "consents.revoke", "danger-outline"));
    }
    actions.push(
      el("button", {
        type: "button",
        class: "quiet",
        dataset: { action: "receipt" },
        text: t("consents.receipt"),
        onclick: () => saveReceipt(consent.id),
      }),
    );
    return el(
      "article",
      {
        class: "consent status-" + consent.status,
        dataset: { consentId: consent.id, status: consent.status, partner: consent.partner_id },
      },
      el(
        "header",
        { class: "consent-head" },
        el("h3", { title: consent.partner_id }, partnerName(consent.partner_id)),
        badge(consent.status),
      ),
      el(
        "dl",
        { class: "facts" },
        el("dt", {}, t("consents.purpose")),
        el("dd", { class: "purpose" }, purposeName(consent.purpose)),
        el("dt", {}, t("consents.categories")),
        el("dd", {}, chips(consent.categories)),
        el("dt", {}, t("consents.expires")),
        el("dd", {}, fmtDate(consent.expires_at, false)),
        el("dt", {}, t("consents.granted")),
        el("dd", {}, fmtDate(consent.created_at)),
        el("dt", {}, t("consents.id")),
        el("dd", {}, shortId(consent.id)),
      ),
      el("div", { class: "actions" }, actions),
    );
  }

  function actionButton(consent, action, label, style) {
    return el("button", {
      type: "button",
      class: style,
      dataset: { action },
      text: t(label),
      onclick: () => change(consent, action),
    });
  }

  async function change(consent, action) {
    if (action === "revoke") {
      const yes = await confirmDialog(
        t("consents.revoke_title"),
        t("consents.revoke_text", {
          partner: partnerName(consent.partner_id),
          purpose: purposeName(consent.purpose),
        }),
        t("consents.revoke_confirm"),
      );
      if (!yes) return;
    }
    const done = await act(async () => {
      await api(`/v1/me/consents/${encodeURIComponent(consent.id)}/${action}`, {
        method: "POST",
      });
    });
    if (done) {
      const said = { pause: "consents.paused_done", resume: "consents.resumed_done" };
      announce(t(said[action] || "consents.revoked_done"));
    }
    // Refresh whatever happened: a 409 means the list on screen was out of date.
    await loadMine();
  }

  async function saveReceipt(id) {
    await act(async () => {
      const name = await download(
        `/v1/me/consents/${encodeURIComponent(id)}/receipt`,
        { accept: "application/jose, application/problem+json" },
        id + ".jws",
      );
      announce(t("consents.receipt_saved", { name }));
    });
  }

  // ----- grant form --------------------------------------------------------------------

  function option(value, label) {
    return el("option", { value }, label);
  }

  function renderGrantForm() {
    const partnerSelect = document.getElementById("grant-partner");
    const chosenPartner = partnerSelect.value;
    const partners = [...state.partners.values()].sort((a, b) =>
      nameOf(a, a.id).localeCompare(nameOf(b, b.id)),
    );
    partnerSelect.replaceChildren(
      option("", partners.length ? t("grant.choose") : t("grant.no_partners")),
      ...partners.map((p) => option(p.id, nameOf(p, p.id))),
    );
    partnerSelect.value = state.partners.has(chosenPartner) ? chosenPartner : "";
    renderPurposes();
    renderGrantCategories();

    const expires = document.getElementById("grant-expires");
    const tomorrow = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
    expires.min = tomorrow;
    if (!expires.value) {
      expires.value = new Date(Date.now() + 365 * 86400000).toISOString().slice(0, 10);
    }
  }

  // Only what the consent rules would grant this resident is offered (the API says which:
  // the owner details only to a vacant house's owner), never a choice bound to be refused.
  function renderGrantCategories() {
    const box = document.getElementById("grant-categories");
    if (state.grantable === null) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    const checked = new Set(
      [...box.querySelectorAll("input:checked")].map((input) => input.value),
    );
    const offered = [...state.categories.values()].filter((c) => state.grantable.has(c.code));
    box.replaceChildren(
      ...offered.map((c) => {
        const id = "cat-" + c.code.replace(/[^a-z0-9]/gi, "-");
        return el(
          "div",
          { class: "checkbox" },
          el("input", {
            type: "checkbox",
            id,
            name: "categories",
            value: c.code,
            checked: checked.has(c.code),
          }),
          el(
            "label",
            { for: id },
            el("span", { class: "checkbox-name" }, nameOf(c, c.code)),
            el("span", { class: "checkbox-help" }, c[lang() === "en" ? "description_en" : "description_ja"]),
          ),
        );
      }),
    );
  }

  function lang() {
    return window.Tsunagu.lang();
  }

  function renderPurposes() {
    const partner = state.partners.get(document.getElementById("grant-partner").value);
    const select = document.getElementById("grant-purpose");
    const chosen = select.value;
    const codes = partner ? partner.purposes : [];
    select.replaceChildren(
      option("", t("grant.choose")),
      ...codes.map((code) => option(code, purposeName(code))),
    );
    select.disabled = !partner;
    select.value = codes.includes(chosen) ? chosen : codes.length === 1 ? codes[0] : "";
  }

  async function grant(event) {
    event.preventDefault();
    const partner = document.getElementById("grant-partner").value;
    const purpose = document.getElementById("grant-purpose").value;
    const categories = [
      ...document.querySelectorAll("#grant-categories input:checked"),
    ].map((input) => input.value);
    const expires = document.getElementById("grant-expires").value;
    const button = document.getElementById("grant-submit");
    button.disabled = true;
    const done = await act(async () => {
      if (!partner) throw new window.Tsunagu.UserError(t("grant.partner") + ": " + t("grant.choose"));
      if (!purpose) throw new window.Tsunagu.UserError(t("grant.purpose") + ": " + t("grant.choose"));
      if (categories.length === 0) throw new window.Tsunagu.UserError(t("grant.need_category"));
      if (!expires) throw new window.Tsunagu.UserError(t("grant.need_expiry"));
      await api("/v1/me/consents", {
        method: "POST",
        // The end of the chosen day in the region's time, as people mean "until the 31st".
        body: { partner_id: partner, purpose, categories, expires_at: `${expires}T23:59:59+09:00` },
      });
    });
    button.disabled = false;
    if (done) {
      document.querySelectorAll("#grant-categories input:checked").forEach((input) => {
        input.checked = false;
      });
      announce(t("grant.done"));
      await loadMine();
    }
  }

  // ----- data tracker and history ------------------------------------------------------

  // The API pages the reads newest first; older ones come a page at a time, on demand.
  const READS_PAGE = 50;

  // The period the resident chose, as whole days in the region's time: from the start of the
  // first day to the end of the last (the API's `to` is exclusive: the next day's start).
  function readsPeriod() {
    const from = document.getElementById("tracker-from").value;
    const to = document.getElementById("tracker-to").value;
    const dayAfter = (day) =>
      new Date(Date.parse(`${day}T00:00:00+09:00`) + 86400000).toISOString();
    return {
      from: from ? `${from}T00:00:00+09:00` : null,
      to: to ? dayAfter(to) : null,
    };
  }

  function fetchReads(cursor) {
    return api("/v1/me/access-log", { params: { ...readsPeriod(), cursor, limit: READS_PAGE } });
  }

  // Each change of period starts a new load; a slower answer to an earlier period must not
  // overwrite the answer to the period now shown.
  let readsLoad = 0;

  async function loadReads() {
    const load = ++readsLoad;
    state.reads = null;
    state.readsCursor = null;
    renderTracker();
    await act(async () => {
      const page = await fetchReads(null);
      if (load !== readsLoad) return;
      state.reads = page.reads;
      state.readsCursor = page.next_cursor;
    });
    if (load !== readsLoad) return;
    if (state.reads === null) state.reads = [];
    renderTracker();
  }

  async function loadMoreReads() {
    const load = readsLoad;
    const button = document.getElementById("tracker-more");
    button.disabled = true;
    await act(async () => {
      const page = await fetchReads(state.readsCursor);
      if (load !== readsLoad) return;
      state.reads = [...state.reads, ...page.reads];
      state.readsCursor = page.next_cursor;
    });
    button.disabled = false;
    renderTracker();
  }

  function renderTracker() {
    const box = document.getElementById("tracker");
    document.getElementById("tracker-more").hidden = !(state.reads && state.readsCursor);
    if (state.reads === null) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    const reads = state.reads;
    box.replaceChildren(
      dataTable(
        [
          "tracker.when",
          "tracker.partner",
          "tracker.purpose",
          "tracker.categories",
          "tracker.consents",
          "tracker.view",
          "tracker.rows",
        ],
        reads.map((read) =>
          el(
            "tr",
            { dataset: { seq: read.seq, partner: read.partner, view: read.view || "" } },
            el("td", { class: "nowrap" }, fmtDate(read.at)),
            el("td", { title: read.partner }, partnerName(read.partner)),
            el("td", {}, purposeName(read.purpose)),
            el("td", {}, chips(read.categories)),
            el("td", {}, read.consent_ids.map(shortId)),
            el("td", {}, read.view ? tOr("view." + read.view, read.view) : "—"),
            el("td", { class: "num" }, read.rows === null ? "—" : String(read.rows)),
          ),
        ),
        readsPeriod().from || readsPeriod().to ? "tracker.empty_period" : "tracker.empty",
      ),
    );
  }

  function renderHistory() {
    const box = document.getElementById("history");
    if (state.history === null) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    const versions = [...state.history].reverse();
    box.replaceChildren(
      dataTable(
        [
          "history.when",
          "tracker.partner",
          "tracker.purpose",
          "history.change",
          "consents.status",
          "history.version",
          "history.receipt",
        ],
        versions.map((c) =>
          el(
            "tr",
            { dataset: { consentId: c.id, change: c.change } },
            el("td", { class: "nowrap" }, fmtDate(c.created_at)),
            el("td", { title: c.partner_id }, partnerName(c.partner_id)),
            el("td", {}, purposeName(c.purpose)),
            el("td", {}, tOr("change." + c.change, c.change)),
            el("td", {}, badge(c.status)),
            el("td", { class: "num" }, String(c.version)),
            el(
              "td",
              {},
              el("button", {
                type: "button",
                class: "quiet small",
                dataset: { action: "receipt" },
                text: t("history.download"),
                onclick: () => saveReceipt(c.id),
              }),
            ),
          ),
        ),
        "history.empty",
      ),
    );
  }

  // ----- linked services (ID link) -----------------------------------------------------

  function renderLinks() {
    const box = document.getElementById("links");
    if (state.links === null) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    box.replaceChildren(
      dataTable(
        ["links.service", "links.how", "links.linked_at", "links.action"],
        state.links.map((link) =>
          el(
            "tr",
            { dataset: { client: link.client_id } },
            el("td", { title: link.client_id }, link.name),
            el("td", {}, tOr("links.how." + link.how, link.how)),
            el("td", { class: "nowrap" }, fmtDate(link.linked_at)),
            el(
              "td",
              {},
              el("button", {
                type: "button",
                class: "quiet small",
                dataset: { action: "unlink" },
                text: t("links.unlink"),
                onclick: () => unlink(link),
              }),
            ),
          ),
        ),
        "links.empty",
      ),
    );
  }

  async function linkWithCode(event) {
    event.preventDefault();
    const input = document.getElementById("link-code");
    const code = input.value.trim();
    if (!code) {
      input.focus();
      return;
    }
    let linked = null;
    const done = await act(async () => {
      linked = await api("/v1/me/links", { method: "POST", body: { code } });
    });
    if (done && linked) {
      input.value = "";
      announce(t("links.linked", { name: linked.name }));
    }
    await loadLinks();
  }

  async function unlink(link) {
    const yes = await confirmDialog(
      t("links.confirm_title"),
      t("links.confirm_text", { name: link.name }),
      t("links.unlink"),
    );
    if (!yes) return;
    const done = await act(async () => {
      await api("/v1/me/links/" + encodeURIComponent(link.client_id), { method: "DELETE" });
    });
    if (done) announce(t("links.unlinked", { name: link.name }));
    await loadLinks();
  }

  async function loadLinks() {
    try {
      state.links = await api("/v1/me/links");
    } catch (error) {
      showError(error);
    }
    renderLinks();
  }

  // ----- erasure -----------------------------------------------------------------------

  async function erase() {
    const yes = await confirmDialog(
      t("erasure.confirm_title"),
      t("erasure.confirm_text"),
      t("erasure.confirm"),
    );
    if (!yes) return;
    const done = await act(async () => {
      state.erasure = await api("/v1/me/erasure", { method: "POST" });
    });
    if (done) announce(t("erasure.done"));
    await loadMine();
  }

  function renderErasure() {
    const box = document.getElementById("erasure-record");
    const record = state.erasure;
    if (!record) {
      box.replaceChildren();
      return;
    }
    const rows = Object.entries(record.rows_deleted)
      .map(([table, n]) => `${table}: ${n}`)
      .join(", ");
    box.replaceChildren(
      el(
        "div",
        { class: "record", dataset: { erasureId: record.id } },
        el("h3", {}, t("erasure.record")),
        el(
          "dl",
          { class: "facts" },
          el("dt", {}, t("erasure.id")),
          el("dd", {}, el("code", {}, record.id)),
          el("dt", {}, t("erasure.salt")),
          el("dd", {}, el("code", { class: "salt" }, record.digest_salt), el("p", { class: "help" }, t("erasure.salt_help"))),
          el("dt", {}, t("erasure.digest")),
          el("dd", {}, el("code", { class: "wrap" }, record.subject_digest)),
          el("dt", {}, t("erasure.completed")),
          el("dd", {}, fmtDate(record.completed_at)),
          el("dt", {}, t("erasure.consents_revoked")),
          el("dd", {}, String(record.consents_revoked)),
          el("dt", {}, t("erasure.key_destroyed")),
          el("dd", {}, t(record.key_destroyed ? "common.yes" : "common.no")),
          el("dt", {}, t("erasure.rows_deleted")),
          el("dd", {}, rows || "0"),
          ...(record.copies_expire_at
            ? [
                el("dt", {}, t("erasure.copies_expire")),
                el(
                  "dd",
                  { class: "copies-expire" },
                  fmtDate(record.copies_expire_at),
                  el("p", { class: "help" }, t("erasure.copies_expire_help")),
                ),
              ]
            : []),
        ),
      ),
    );
  }

  // ----- page --------------------------------------------------------------------------

  function render() {
    renderGrantCategories();
    renderConsents();
    renderTracker();
    renderHistory();
    renderLinks();
    renderErasure();
  }

  let wired = false;

  async function ready() {
    if (!wired) {
      wired = true;
      document.getElementById("grant-form").addEventListener("submit", grant);
      document.getElementById("grant-partner").addEventListener("change", renderPurposes);
      document.getElementById("refresh").addEventListener("click", () => {
        window.Tsunagu.clearAlerts();
        loadMine();
      });
      document.getElementById("erase").addEventListener("click", erase);
      document.getElementById("link-form").addEventListener("submit", linkWithCode);
      document.getElementById("tracker-more").addEventListener("click", loadMoreReads);
      for (const id of ["tracker-from", "tracker-to"]) {
        document.getElementById(id).addEventListener("change", loadReads);
      }
      window.Tsunagu.onLangChange(() => {
        render();
        renderGrantForm();
      });
    }
    render();
    try {
      await loadCatalogue();
    } catch (error) {
      showError(error);
    }
    renderGrantForm();
    await loadMine();
  }

  window.Tsunagu.start(ready);
})();
