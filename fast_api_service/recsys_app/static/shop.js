// The storefront page: plain DOM code, no framework, no build step, nothing fetched from elsewhere.
// State lives in the URL hash (#visitor=ID[&item=ID]), so links, reloads and Back work.

const API = "/shop/api";
const K = 12;
const SIMILAR_K = 8;
const POPULAR_K = 10;

const SOURCES = {
  ranked: "Two-stage ranker",
  als: "ALS",
  i2i: "Item-to-item",
  history_i2i: "Like your history",
  online_i2i: "Online (your clicks)",
  default: "Popular",
  covisitation: "Viewed together",
};
const FALLBACKS = {
  cold_user: "no history for this visitor, so popular items",
  no_ranked_recommendations: "no ranked list for this visitor, so ALS or item-to-item",
  filled_with_default: "the lists ran short, so popular items fill the rest",
  database_unavailable: "the database is unreachable, so the latest clicks may be missing",
  no_online_events: "no clicks yet",
};
const EXAMPLES = { heavy: "Heavy user", light: "Light user", new: "New visitor" };

const $ = (id) => document.getElementById(id);
const state = { config: null, visitor: null, item: null, popular: [], renders: 0 };
// Read by the browser test: when the recommendations were first painted and last re-rendered.
window.shopTimings = { firstRecommendations: null, lastRender: null };

async function api(path, options = {}) {
  const response = await fetch(API + path, { headers: { Accept: "application/json" }, ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
    throw new Error(detail);
  }
  return body;
}

function say(message) {
  $("status").textContent = message;
}

function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  const number = (name) => (/^\d+$/.test(params.get(name) ?? "") ? Number(params.get(name)) : null);
  return { visitor: number("visitor"), item: number("item") };
}

function categoryText(card) {
  if (!card.category_path.length) return card.in_catalogue ? "No category" : "Not in the catalogue";
  const path = card.category_path.map(String);
  if (card.hidden_levels) path.splice(1, 0, "…");
  return "Category " + path.join(" › ");
}

function priceText(card) {
  return card.price === null ? "No price" : card.price.toLocaleString("en", { maximumFractionDigits: 2 });
}

function availabilityText(card) {
  if (card.available === null) return ["Availability unknown", "unknown"];
  return card.available ? ["In stock", "in-stock"] : ["Out of stock", "out-of-stock"];
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderCard(card, visitor) {
  const item = document.createElement("li");
  const link = element("a", "card");
  link.href = `#visitor=${visitor}&item=${card.item_id}`;
  link.dataset.itemId = card.item_id;
  link.dataset.source = card.source;
  // One hue per root category, so related items look related.
  link.style.setProperty("--hue", String(((card.category_path[0] ?? card.item_id) * 47) % 360));
  const picture = element("img", "card-picture");
  picture.src = "/shop/static/product.svg";
  picture.width = 64;
  picture.height = 64;
  picture.alt = `Picture of item ${card.item_id}`;
  const [availability, availabilityClass] = availabilityText(card);
  link.append(
    picture,
    element("span", "card-title", `Item ${card.item_id}`),
    element("span", "card-category", categoryText(card)),
    element("span", "card-price", priceText(card)),
    element("span", `badge availability ${availabilityClass}`, availability),
    element("span", `badge source-${card.source}`, SOURCES[card.source] ?? card.source),
  );
  item.append(link);
  return item;
}

function renderCards(list, cards, visitor) {
  list.replaceChildren(...cards.map((card) => renderCard(card, visitor)));
}

function explain(answer) {
  const counts = {};
  for (const card of answer.items) counts[card.source] = (counts[card.source] ?? 0) + 1;
  const sources = answer.sources.map((s) => `${SOURCES[s] ?? s} ×${counts[s]}`).join(", ");
  const fallbacks = answer.fallbacks.length
    ? answer.fallbacks.map((f) => FALLBACKS[f] ?? f).join("; ")
    : "none";
  return `Sources: ${sources || "none"}. Fallbacks: ${fallbacks}.`;
}

async function showVisitor(visitor) {
  const answer = await api(`/visitors/${visitor}?k=${K}`);
  if (visitor !== state.visitor) return; // another visitor was chosen meanwhile
  renderCards($("recommendations"), answer.items, visitor);
  // Card links carry the visitor: the popular strip follows the one shown.
  renderCards($("popular"), state.popular, visitor);
  $("recommendations-title").textContent = `Recommended for visitor ${visitor}`;
  $("explanation").textContent = explain(answer);
  $("visitor-id").value = String(visitor);
  state.renders += 1;
  document.body.dataset.renders = String(state.renders);
  window.shopTimings.lastRender = performance.now();
  if (window.shopTimings.firstRecommendations === null) markFirstPaint();
}

function markFirstPaint() {
  // The frame after this one is painted: its start is when the cards became visible.
  requestAnimationFrame(() =>
    setTimeout(() => {
      const painted = performance.now();
      window.shopTimings.firstRecommendations = painted;
      $("timing").textContent = `Recommendations painted ${Math.round(painted)} ms after the page was requested.`;
    }, 0),
  );
}

async function record(item, event) {
  if (!state.config.browser_events) return false;
  await api(`/visitors/${state.visitor}/events`, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify({ item_id: item, event }),
  });
  return true;
}

async function openItem(item) {
  const section = $("product");
  const details = api(`/items/${item}?k=${SIMILAR_K}`);
  const recorded = record(item, "view");
  const answer = await details;
  if (item !== state.item) return;
  const card = answer.item;
  const [availability] = availabilityText(card);
  $("product-title").textContent = `Item ${item}`;
  $("product-image").alt = `Picture of item ${item}`;
  const price = card.price === null ? "No price" : `Price ${priceText(card)}`;
  $("product-facts").textContent = `${categoryText(card)} · ${price} · ${availability}`;
  $("back").href = `#visitor=${state.visitor}`;
  renderCards($("similar"), answer.similar, state.visitor);
  $("similar-title").textContent = answer.similar.length ? "Similar items" : "No similar items known";
  section.hidden = false;
  $("product-title").focus();
  if (await recorded) {
    say(`Recorded your view of item ${item}; recommendations updated.`);
    await showVisitor(state.visitor);
  }
}

async function addToCart() {
  const item = state.item;
  if (item === null) return;
  if (await record(item, "addtocart")) {
    say(`Item ${item} is in your cart; recommendations updated.`);
    await showVisitor(state.visitor);
  }
}

async function onRoute() {
  const { visitor, item } = route();
  const chosen = visitor ?? state.visitor;
  const tasks = [];
  if (chosen !== state.visitor) {
    state.visitor = chosen;
    tasks.push(showVisitor(chosen));
  }
  if (item !== state.item) {
    state.item = item;
    if (item === null) $("product").hidden = true;
    else tasks.push(openItem(item));
  }
  await Promise.all(tasks);
}

function renderExamples() {
  const buttons = state.config.examples.map((example) => {
    const button = element("button", "example", EXAMPLES[example.kind] ?? example.kind);
    button.type = "button";
    button.dataset.kind = example.kind;
    button.title =
      example.kind === "new" ? "A visitor id nobody has used" : `Visitor ${example.user_id}, ${example.interactions} events`;
    button.addEventListener("click", () => chooseExample(example.kind).catch(fail));
    return button;
  });
  $("examples").replaceChildren(...buttons);
}

async function chooseExample(kind) {
  // A new visitor's id must still be unused: ask again rather than reuse the one loaded at start.
  if (kind === "new") state.config = await api("/config");
  const example = state.config.examples.find((e) => e.kind === kind);
  location.hash = `visitor=${example.user_id}`;
}

function fail(error) {
  say(`Something went wrong: ${error.message}`);
}

async function start() {
  const [config, popular] = await Promise.all([api("/config"), api(`/popular?k=${POPULAR_K}`)]);
  state.config = config;
  state.popular = popular.items;
  $("events-off").hidden = state.config.browser_events;
  $("add-to-cart").disabled = !state.config.browser_events;
  renderExamples();
  if (route().visitor === null) {
    const first = state.config.examples[0];
    history.replaceState(null, "", `#visitor=${first.user_id}`);
  }
  await onRoute();
  window.addEventListener("hashchange", () => onRoute().catch(fail));
}

$("visitor-form").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = `visitor=${Number($("visitor-id").value)}`;
});
$("add-to-cart").addEventListener("click", () => addToCart().catch(fail));
start().catch(fail);
