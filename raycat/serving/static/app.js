// The raycat labeling page: a page of queued products, the model's top
// categories, confirm / reject / add, submit.  Plain browser JavaScript.
"use strict";

const KEY_LABELER = "raycat.labeler";
const KEY_TOKEN = "raycat.token";
const KEY_SAVED = "raycat.savedTotal";

const state = {
  labeler: localStorage.getItem(KEY_LABELER) || "",
  token: localStorage.getItem(KEY_TOKEN) || "",
  categories: new Map(), // id -> path
  byPath: new Map(), // lower-case path -> id
  items: [],
  // product id -> Map(category id -> 1 | 0)
  decisions: new Map(),
  // product id -> category ids shown, in order
  shown: new Map(),
  focus: 0,
  selected: 0,
};

const $ = (sel, root = document) => root.querySelector(sel);

function setStatus(text, kind = "") {
  const el = $("#status");
  el.textContent = text;
  el.className = kind;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

// -- login ----------------------------------------------------------------------

function showLogin() {
  $("#login").hidden = false;
  $("#work").hidden = true;
  $("#login-labeler").value = state.labeler;
  $("#login-token").value = state.token;
  $("#login-labeler").focus();
}

function onLogin(event) {
  event.preventDefault();
  state.labeler = $("#login-labeler").value.trim();
  state.token = $("#login-token").value.trim();
  if (!state.labeler) return;
  localStorage.setItem(KEY_LABELER, state.labeler);
  localStorage.setItem(KEY_TOKEN, state.token);
  $("#login").hidden = true;
  start();
}

// -- loading --------------------------------------------------------------------

async function loadModel() {
  const info = await api("v1/model");
  $("#model").textContent = `model ${info.model} · ${info.model_version}`;
  const list = $("#taxonomy");
  list.replaceChildren();
  for (const c of info.categories) {
    state.categories.set(c.id, c.path);
    state.byPath.set(c.path.toLowerCase(), c.id);
    const option = document.createElement("option");
    option.value = c.path;
    list.append(option);
  }
}

async function loadPage() {
  setStatus("Loading the next page…");
  const params = new URLSearchParams({ labeler: state.labeler });
  let page;
  try {
    page = await api(`v1/queue?${params}`);
  } catch (err) {
    setStatus(`Could not load the queue: ${err.message}`, "error");
    if (String(err.message).startsWith("401")) showLogin();
    return;
  }
  state.items = page.items;
  state.decisions = new Map(page.items.map((it) => [it.product_id, new Map()]));
  state.focus = 0;
  state.selected = 0;
  render();
  setStatus(
    page.items.length
      ? `${page.items.length} products, held for you for ` +
          `${Math.round(page.reservation_ttl_s / 60)} minutes.`
      : "The queue is empty: nothing to label right now."
  );
}

async function start() {
  $("#work").hidden = false;
  $("#who").textContent = `labeler: ${state.labeler}`;
  updateSavedTotal(0);
  try {
    await loadModel();
  } catch (err) {
    setStatus(`Could not reach the model: ${err.message}`, "error");
    return;
  }
  await loadPage();
}

// -- rendering ------------------------------------------------------------------

function render() {
  const list = $("#products");
  list.replaceChildren();
  state.items.forEach((item, index) => list.append(renderProduct(item, index)));
  highlight();
}

function categoryIds(item) {
  const ids = item.top.map((c) => c.category);
  if (!ids.includes(item.asked.category)) ids.push(item.asked.category);
  for (const cid of state.decisions.get(item.product_id).keys()) {
    if (!ids.includes(cid)) ids.push(cid);
  }
  return ids;
}

function renderProduct(item, index) {
  const node = $("#product-template").content.firstElementChild.cloneNode(true);
  node.dataset.index = index;
  node.dataset.productId = item.product_id;
  const img = $(".thumb", node);
  if (item.image_url) {
    img.src = item.image_url;
    img.alt = item.title;
  } else {
    img.remove();
  }
  $(".title", node).textContent = item.title || item.product_id;
  $(".description", node).textContent = item.description;
  $(".asked", node).textContent =
    `asked about: ${item.asked.path} (${item.asked.strategy})`;

  const ids = categoryIds(item);
  state.shown.set(item.product_id, ids);
  const probability = new Map(item.top.map((c) => [c.category, c.probability]));
  const ruled = new Set(item.top.filter((c) => c.rule).map((c) => c.category));
  for (const r of item.rules) ruled.add(r.category);
  if (item.asked.rule_positive) ruled.add(item.asked.category);
  const decided = state.decisions.get(item.product_id);
  const ul = $(".categories", node);
  ids.forEach((cid, row) => {
    const li = document.createElement("li");
    li.className = "category";
    li.dataset.category = cid;
    li.dataset.row = row;
    const value = decided.get(cid);
    if (value === 1) li.classList.add("yes");
    if (value === 0) li.classList.add("no");
    if (cid === item.asked.category) li.classList.add("asked-row");
    const p = probability.get(cid);
    const pText = p === undefined ? "" : `${Math.round(p * 100)}%`;
    li.innerHTML =
      `<span class="key">${row < 9 ? row + 1 : ""}</span>` +
      `<span class="path"></span>` +
      `<span class="bar"><span style="width:${p === undefined ? 0 : p * 100}%">` +
      `</span></span><span class="p">${pText}</span>` +
      (ruled.has(cid) ? '<span class="rule-mark" title="the old rule system put it here">old</span>' : "") +
      `<button type="button" class="yes-button" title="confirm (y)">✓</button>` +
      `<button type="button" class="no-button" title="reject (n)">✗</button>`;
    $(".path", li).textContent = state.categories.get(cid) || cid;
    $(".yes-button", li).addEventListener("click", () => decide(index, row, 1));
    $(".no-button", li).addEventListener("click", () => decide(index, row, 0));
    ul.append(li);
  });

  const search = $(".search", node);
  const add = () => addCategory(index, search.value);
  $(".add-button", node).addEventListener("click", add);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      add();
    }
  });
  node.addEventListener("click", () => {
    state.focus = index;
    highlight();
  });
  return node;
}

function highlight() {
  document.querySelectorAll(".product").forEach((el) => {
    const current = Number(el.dataset.index) === state.focus;
    el.classList.toggle("focus", current);
    el.querySelectorAll(".category").forEach((li) => {
      li.classList.toggle("selected", current && Number(li.dataset.row) === state.selected);
    });
  });
  const el = document.querySelector(`.product[data-index="${state.focus}"]`);
  if (el) el.scrollIntoView({ block: "nearest" });
}

// -- decisions ------------------------------------------------------------------

function decide(index, row, value) {
  const item = state.items[index];
  if (!item) return;
  const cid = state.shown.get(item.product_id)[row];
  if (cid === undefined) return;
  const decided = state.decisions.get(item.product_id);
  if (value === null) decided.delete(cid);
  else decided.set(cid, value);
  state.focus = index;
  state.selected = row;
  rerender(index);
}

function rerender(index) {
  const old = document.querySelector(`.product[data-index="${index}"]`);
  old.replaceWith(renderProduct(state.items[index], index));
  highlight();
}

function addCategory(index, text) {
  const wanted = text.trim().toLowerCase();
  if (!wanted) return;
  let cid = state.byPath.get(wanted);
  if (cid === undefined && state.categories.has(text.trim())) cid = text.trim();
  if (cid === undefined) {
    // A unique match on part of a path is enough.
    const hits = [...state.byPath.entries()].filter(([path]) => path.includes(wanted));
    if (hits.length === 1) cid = hits[0][1];
  }
  if (cid === undefined) {
    setStatus(`No single category matches "${text}"; pick one from the list.`, "error");
    return;
  }
  const item = state.items[index];
  state.decisions.get(item.product_id).set(cid, 1);
  state.focus = index;
  rerender(index);
  state.selected = state.shown.get(item.product_id).indexOf(cid);
  highlight();
}

function acceptLikely(index) {
  const item = state.items[index];
  if (!item) return;
  const decided = state.decisions.get(item.product_id);
  for (const c of item.top) if (c.probability >= 0.5) decided.set(c.category, 1);
  rerender(index);
}

// -- submitting -----------------------------------------------------------------

function updateSavedTotal(added) {
  const total = Number(localStorage.getItem(KEY_SAVED) || 0) + added;
  localStorage.setItem(KEY_SAVED, String(total));
  $("#saved-total").textContent = `labels saved from this browser: ${total}`;
}

async function submitPage() {
  const labels = [];
  for (const item of state.items) {
    for (const [category, value] of state.decisions.get(item.product_id)) {
      labels.push({ product_id: item.product_id, category, value, iteration: item.iteration });
    }
  }
  if (!labels.length) {
    setStatus("Nothing decided on this page yet.", "error");
    return;
  }
  $("#submit").disabled = true;
  try {
    const result = await api("v1/labels", {
      method: "POST",
      body: JSON.stringify({ labeler: state.labeler, labels }),
    });
    updateSavedTotal(result.saved);
    await loadPage();
    setStatus(
      `Saved ${result.saved} labels (${result.rows} with the implied ones); ` +
        `${result.completed} products done.`,
      "ok"
    );
  } catch (err) {
    setStatus(`Not saved: ${err.message}`, "error");
  } finally {
    $("#submit").disabled = false;
  }
}

// -- keyboard -------------------------------------------------------------------

function onKey(event) {
  if (!$("#login").hidden) return;
  const typing = event.target.matches("input, textarea");
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    submitPage();
    return;
  }
  if (typing) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const rows = state.items.length
    ? state.shown.get(state.items[state.focus].product_id).length
    : 0;
  switch (event.key) {
    case "j":
      state.focus = Math.min(state.focus + 1, state.items.length - 1);
      state.selected = 0;
      highlight();
      break;
    case "k":
      state.focus = Math.max(state.focus - 1, 0);
      state.selected = 0;
      highlight();
      break;
    case "y":
      decide(state.focus, state.selected, 1);
      break;
    case "n":
      decide(state.focus, state.selected, 0);
      break;
    case "u":
      decide(state.focus, state.selected, null);
      break;
    case "a":
      acceptLikely(state.focus);
      break;
    case "/": {
      event.preventDefault();
      const el = document.querySelector(`.product[data-index="${state.focus}"] .search`);
      if (el) el.focus();
      break;
    }
    default:
      if (/^[1-9]$/.test(event.key) && Number(event.key) <= rows) {
        state.selected = Number(event.key) - 1;
        highlight();
      }
  }
}

// -- start ----------------------------------------------------------------------

$("#login").addEventListener("submit", onLogin);
$("#submit").addEventListener("click", submitPage);
$("#reload").addEventListener("click", loadPage);
$("#change-user").addEventListener("click", showLogin);
document.addEventListener("keydown", onKey);
if (state.labeler) start();
else showLogin();
