// headstart studio: the page's behaviour. Plain browser JavaScript, no build step; every request goes to this
// studio's own API, the token riding in the cookie the page set.
"use strict";

// kind: "images" (a class-folder dataset) or "texts" (a table); rows: a table's rows by id, {text, label}.
// present: every image path or row id the dataset holds now; shown: how many items each class shows.
const state = { kind: "images", classes: [], rows: new Map(), present: new Set(), shown: new Map(), model: null };
const isTexts = () => state.kind === "texts";

const $ = (selector, root = document) => root.querySelector(selector);
const element = (tag, attributes = {}, ...children) => {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) made.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) made.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) made.append(child);
  }
  return made;
};
const encodePath = (path) => path.split("/").map(encodeURIComponent).join("/");
const thumbnailUrl = (path) => "/api/thumbnail/" + encodePath(path);

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const text = await response.text();
  const answer = text ? JSON.parse(text) : {};
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}
const postJson = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

let messageTimer = null;
function say(text, { error = false, undo = null } = {}) {
  const box = $("#message");
  box.replaceChildren(element("span", {}, text));
  if (undo) box.append(element("button", { onclick: () => { box.hidden = true; undo(); } }, "undo"));
  box.className = error ? "error" : "";
  box.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { box.hidden = true; }, error ? 8000 : 5000);
}
const failed = (error) => say(error.message, { error: true });

function showTab(name) {
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("on", button.dataset.tab === name);
  }
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== "tab-" + name;
  }
  if (name === "ship") renderShip();
  // A tab opens at its top, not at wherever the last one was scrolled to.
  window.scrollTo(0, 0);
}

// ---- Data ----

// An image's thumbnail or a row's text, with a caption and (optionally) move/remove actions.
function itemOf(path, { caption = null, actions = true } = {}) {
  if (isTexts()) {
    const row = state.rows.get(path);
    const item = element("div", { class: "item text-item", "data-path": path },
      element("div", { class: "text" }, row ? row.text : "(no longer in the table)"),
      element("div", { class: "hint" }, caption ?? path));
    if (actions && row) item.append(itemActions(path));
    return item;
  }
  const name = path.split("/").pop();
  const figure = element("figure", { class: "item", "data-path": path },
    element("img", { src: thumbnailUrl(path), loading: "lazy", alt: name, title: path }),
    element("figcaption", {}, caption ?? name));
  if (actions) figure.append(itemActions(path));
  return figure;
}

const classOf = (path) => isTexts() ? state.rows.get(path)?.label : path.split("/")[0];
const textOf = (path) => state.rows.get(path)?.text;

function itemActions(path) {
  const current = classOf(path);
  const move = element("select", { class: "move", title: "move to another class" },
    element("option", { value: "" }, "move to…"),
    state.classes.filter((c) => c.name !== current).map((c) => element("option", { value: c.name }, c.name)));
  move.addEventListener("change", () => { if (move.value) moveImage(path, move.value); });
  const trash = element("button", { class: "trash", title: "put in .headstart-trash (undo-able)",
    onclick: () => trashImage(path) }, "remove");
  return element("div", { class: "actions" }, move, trash);
}

async function loadData() {
  const data = await api("/api/data");
  state.kind = data.kind;
  state.classes = data.classes;
  const texts = isTexts();
  $("#folder").textContent = data.folder;
  $("#image-bar").hidden = texts;
  $("#text-bar").hidden = !texts;
  $("#try-images").hidden = texts;
  $("#try-texts").hidden = !texts;
  $("#class-names").replaceChildren(...data.classes.map((c) => element("option", { value: c.name })));
  const backbone = $("#backbone");
  if (!backbone.options.length) backbone.replaceChildren(...data.backbones.map((name) => element("option", {}, name)));
  let summary;
  if (texts) {
    state.rows = new Map(data.classes.flatMap((c) => c.rows.map((r) => [r.id, { text: r.text, label: c.name }])));
    state.present = new Set(state.rows.keys());
    summary = `${data.classes.length} classes, ${state.rows.size} rows` + (data.skipped.length
      ? `, ${data.skipped.length} rows skipped (${data.skipped[0].id}: ${data.skipped[0].reason}${data.skipped.length > 1 ? ", …" : ""})` : "");
  } else {
    state.present = new Set(data.classes.flatMap((c) => c.images));
    const total = state.present.size;
    summary = `${data.classes.length} classes, ${total} images` + (data.unfiled.length ? `, ${data.unfiled.length} outside any class` : "");
  }
  $("#data-summary").textContent = summary;
  const holder = $("#classes");
  holder.replaceChildren(...data.classes.map(texts ? textClassSection : classSection));
  if (!data.classes.length) {
    holder.append(element("p", { class: "hint" }, texts ? "No rows yet: type texts above with their label."
      : "No classes yet: add one above, then drop images onto it."));
  }
}

// Items are put on the page a chunk at a time: thousands of thumbnails or rows at once take seconds to lay out.
const CHUNK = 240;

// Appends `items` to `holder` as `render` makes them, as many as the class showed before (one chunk at first);
// answers a button that shows the next chunk.
function chunked(holder, klass, items, render) {
  const more = element("button", { class: "small more" });
  let shown = 0;
  const upTo = (count) => {
    holder.append(...items.slice(shown, count).map(render));
    shown = Math.min(items.length, count);
    state.shown.set(klass, Math.max(shown, CHUNK));
    more.hidden = shown >= items.length;
    more.textContent = `show ${Math.min(CHUNK, items.length - shown)} more (${items.length - shown} not shown)`;
  };
  more.addEventListener("click", () => upTo(shown + CHUNK));
  upTo(state.shown.get(klass) ?? CHUNK);
  return more;
}

function textClassSection(klass) {
  const row = (r) => {
    const label = element("input", { class: "label", list: "class-names", value: klass.name, title: "type or pick a label" });
    label.addEventListener("change", () => {
      const value = label.value.trim();
      if (value && value !== klass.name) moveImage(r.id, value);
    });
    return element("tr", { "data-path": r.id }, element("td", { class: "text" }, r.text), element("td", {}, label),
      element("td", {}, element("button", { class: "small trash", title: "put in .headstart-trash (undo-able)",
        onclick: () => trashImage(r.id) }, "remove")));
  };
  const table = element("table", { class: "rows" });
  return element("section", { class: "class", "data-class": klass.name },
    element("h2", {}, klass.name, element("span", { class: "count" }, `${klass.rows.length} rows`)),
    table, chunked(table, klass.name, klass.rows, row));
}

async function addTexts() {
  const texts = $("#new-texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
  const label = $("#new-label").value.trim();
  if (!texts.length || !label) { say("type texts, one per line, and their label", { error: true }); return; }
  try {
    const answer = await postJson("/api/texts", { label, texts });
    $("#new-texts").value = "";
    await loadData();
    say(`added ${answer.added} to ${label}`);
  } catch (error) { failed(error); }
}

function classSection(klass) {
  const input = element("input", { type: "file", multiple: "", accept: "image/*", class: "upload" });
  input.addEventListener("change", () => upload(klass.name, input.files));
  const grid = element("div", { class: "grid" });
  const section = element("section", { class: "class", "data-class": klass.name },
    element("h2", {}, klass.name, element("span", { class: "count" }, `${klass.images.length} images`),
      element("label", { class: "hint" }, "add images ", input),
      element("button", { class: "small", onclick: () => capture(klass.name) }, "webcam")),
    grid, chunked(grid, klass.name, klass.images, (path) => itemOf(path)));
  section.addEventListener("dragover", (event) => { event.preventDefault(); section.classList.add("over"); });
  section.addEventListener("dragleave", () => section.classList.remove("over"));
  section.addEventListener("drop", (event) => {
    event.preventDefault();
    section.classList.remove("over");
    upload(klass.name, event.dataTransfer.files);
  });
  return section;
}

async function addClass() {
  const name = $("#new-class").value.trim();
  if (!name) return;
  try {
    await postJson("/api/classes", { name });
    $("#new-class").value = "";
    await loadData();
  } catch (error) { failed(error); }
}

async function upload(klass, files) {
  if (!files || !files.length) return;
  const form = new FormData();
  for (const file of files) form.append("image", file, file.name);
  try {
    const answer = await api("/api/images/" + encodeURIComponent(klass), { method: "POST", body: form });
    await loadData();
    const refused = answer.refused.map((r) => `${r.name}: ${r.error}`).join("; ");
    say(`added ${answer.added.length} to ${klass}` + (refused ? `; refused ${refused}` : ""), { error: !!refused });
  } catch (error) { failed(error); }
}

// An image moved to another class, or a row relabelled.
async function moveImage(path, klass) {
  const from = classOf(path);
  try {
    const answer = await postJson("/api/move", { path, class: klass, text: textOf(path) });
    await refreshAfterEdit();
    say(`moved to ${klass}`, { undo: () => moveImage(answer.path, from) });
  } catch (error) { failed(error); }
}

async function trashImage(path) {
  try {
    const answer = await postJson("/api/trash", { path, text: textOf(path) });
    await refreshAfterEdit();
    say(`removed ${isTexts() ? "row " : ""}${path} (kept in .headstart-trash)`, {
      undo: async () => {
        try { await postJson("/api/restore", { path: answer.trashed }); await refreshAfterEdit(); }
        catch (error) { failed(error); }
      },
    });
  } catch (error) { failed(error); }
}

async function refreshAfterEdit() {
  await loadData();
  for (const item of document.querySelectorAll("#cell .item, #audit-result .item")) {
    if (!state.present.has(item.dataset.path)) {
      item.classList.add("done");
      item.style.opacity = "0.3";
    }
  }
}

// One frame from the webcam into a class.
async function capture(klass) {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    const video = element("video", { autoplay: "", muted: "", playsinline: "" });
    video.srcObject = stream;
    await video.play();
    const canvas = element("canvas", { width: video.videoWidth, height: video.videoHeight });
    canvas.getContext("2d").drawImage(video, 0, 0);
    stream.getTracks().forEach((track) => track.stop());
    const blob = await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.92));
    const name = `webcam-${new Date().toISOString().replace(/[:.]/g, "-")}.jpg`;
    await upload(klass, [new File([blob], name, { type: "image/jpeg" })]);
  } catch (error) { failed(error); }
}

// ---- Train ----

async function train(event) {
  event.preventDefault();
  const form = new FormData($("#train-form"));
  const settings = { backbone: form.get("backbone"), features: form.get("features"), head: form.get("head"),
    k: Number(form.get("k")), class_weight: form.get("class_weight"), folds: Number(form.get("folds")),
    seed: Number(form.get("seed")), search: form.get("search") === "on",
    open_set: form.get("open_set") === "on" ? Number(form.get("open_set_rate")) : null };
  $("#train").disabled = true;
  const holder = $("#progress");
  holder.hidden = false;
  holder.dataset.stages = "";
  const progress = followProgress((p) => {
    const bar = $("#progress-bar");
    if (p.total) { bar.max = p.total; bar.value = p.done; } else bar.removeAttribute("value");
    $("#progress-text").textContent = describe(p);
    // The stages this training went through, for whoever looks at the page (and the browser test).
    if (p.stage && !holder.dataset.stages.split("|").includes(p.stage)) {
      holder.dataset.stages += (holder.dataset.stages ? "|" : "") + p.stage;
    }
  });
  try {
    const report = await postJson("/api/train", settings);
    state.model = report;
    renderTrained(report);
  } catch (error) { failed(error); }
  finally {
    progress.close();
    holder.hidden = true;
    $("#train").disabled = false;
  }
}

// Follows the studio's progress stream (server-sent events) until closed.
function followProgress(show) {
  const source = new EventSource("/api/progress");
  source.onmessage = (event) => show(JSON.parse(event.data));
  return source;
}
const describe = (p) => p.stage + (p.total ? ` ${p.done} of ${p.total}` : "");

// The sample standard deviation, as the CLI reports a fold spread.
const spread = (values) => {
  if (values.length < 2) return 0;
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1));
};

function renderTrained(report) {
  const holder = $("#train-result");
  const names = report.class_names;
  const before = report.previous_accuracy === null || report.previous_accuracy === undefined ? null
    : element("div", { id: "before-after" },
      `before ${(report.previous_accuracy * 100).toFixed(1)} % → now ${(report.accuracy * 100).toFixed(1)} %`);
  const headline = element("div", {},
    element("span", { class: "accuracy", id: "accuracy" }, (report.accuracy * 100).toFixed(1) + " %"),
    ` cross-validated accuracy ± ${(spread(report.fold_accuracies) * 100).toFixed(1)} over ${report.folds} folds · ` +
    `${report.samples} inputs · ${report.head} on ${report.backbone}` + (report.open_set ? " · answers unknown" : "") +
    (report.chosen_c === null ? "" : ` · C = ${report.chosen_c}${report.c_kept ? " (kept from the last training)" : " (searched)"}`) +
    ` · ${report.seconds.toFixed(2)} s`, before);
  const perClass = element("table", { id: "per-class" },
    element("tr", {}, ["class", "precision", "recall", "F1", "inputs"].map((h) => element("th", {}, h))),
    report.per_class.map((c) => element("tr", {}, element("td", { class: "name" }, c.name),
      [c.precision, c.recall, c.f1].map((v) => element("td", {}, v.toFixed(3))), element("td", {}, c.support))));
  const largest = Math.max(1, ...report.confusion.flat());
  const confusion = element("table", { class: "confusion", id: "confusion" },
    element("tr", {}, element("th", {}, "true \\ predicted"), names.map((n) => element("th", {}, n))),
    report.confusion.map((row, t) => element("tr", {}, element("th", {}, names[t]),
      row.map((count, p) => element("td", {
        class: "cell", "data-truth": t, "data-predicted": p, title: `${names[t]} answered as ${names[p]}`,
        style: `background: rgba(${t === p ? "31,119,180" : "214,39,40"}, ${(0.1 + 0.8 * count / largest).toFixed(2)})`,
        onclick: () => openCell(t, p),
      }, count)))));
  const features = report.features ? element("div", {}, element("h3", {}, "Features compared (cross-validated)"),
    element("table", { id: "features" },
      element("tr", {}, ["features", "dim", "accuracy", "± folds"].map((h) => element("th", {}, h))),
      report.features.candidates.map((c, i) => element("tr", { class: i === report.features.chosen ? "chosen" : "" },
        element("td", { class: "name" }, c.features + (i === report.features.chosen ? " (chosen)" : "")),
        element("td", {}, c.dim), element("td", {}, c.cv_accuracy.toFixed(4)), element("td", {}, c.fold_spread.toFixed(4))))))
    : null;
  holder.replaceChildren(headline, features,
    element("div", { class: "result-grid" },
      element("div", {}, element("h3", {}, "Per class"), perClass),
      element("div", {}, element("h3", {}, "Confusion (click a cell)"), confusion),
      element("div", {}, element("h3", {}, "Calibration"), calibration(report.answers))),
    element("h3", {}, "Mistakes, most confident first"),
    element("div", { class: "grid", id: "mistakes" }, report.answers
      .filter((a) => a.truth !== a.predicted)
      .sort((a, b) => b.confidence - a.confidence)
      .slice(0, 60)
      .map((a) => itemOf(a.path, { caption: `${names[a.truth]} → ${names[a.predicted]} ${(a.confidence * 100).toFixed(0)} %` }))));
}

// Reliability: per band of confidence, how often the answer was right.
function calibration(answers) {
  const bands = Array.from({ length: 10 }, () => ({ count: 0, right: 0 }));
  for (const a of answers) {
    const band = bands[Math.min(9, Math.floor(a.confidence * 10))];
    band.count += 1;
    band.right += a.truth === a.predicted ? 1 : 0;
  }
  const width = 220, height = 160;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("id", "calibration");
  const line = document.createElementNS(svg.namespaceURI, "line");
  Object.entries({ x1: 0, y1: height, x2: width, y2: 0, stroke: "#999", "stroke-dasharray": "4" })
    .forEach(([k, v]) => line.setAttribute(k, v));
  svg.append(line);
  bands.forEach((band, i) => {
    if (!band.count) return;
    const bar = document.createElementNS(svg.namespaceURI, "rect");
    const accuracy = band.right / band.count;
    Object.entries({ x: i * width / 10 + 2, width: width / 10 - 4, y: height - accuracy * height,
      height: accuracy * height, fill: "#1f77b4" }).forEach(([k, v]) => bar.setAttribute(k, v));
    const title = document.createElementNS(svg.namespaceURI, "title");
    title.textContent = `confidence ${i * 10}-${i * 10 + 10} %: ${(accuracy * 100).toFixed(0)} % right of ${band.count}`;
    bar.append(title);
    svg.append(bar);
  });
  return element("div", { class: "hint" }, svg, element("div", {}, "bars: right answers per confidence band"));
}

function openCell(truth, predicted) {
  const report = state.model;
  const names = report.class_names;
  const rows = report.answers.filter((a) => a.truth === truth && a.predicted === predicted);
  const view = $("#cell");
  view.replaceChildren(
    element("div", { class: "bar" }, element("b", {}, `${names[truth]} answered as ${names[predicted]}: ${rows.length}`),
      element("button", { id: "cell-close", onclick: () => { view.hidden = true; } }, "close")),
    element("div", { class: "grid" }, rows.slice(0, 500).map((a) =>
      itemOf(a.path, { caption: `${(a.confidence * 100).toFixed(0)} % ${a.path.split("/").pop()}` }))));
  view.hidden = false;
}

// ---- Audit ----

async function runAudit() {
  const holder = $("#audit-result");
  const hint = element("p", { class: "hint" }, "auditing…");
  holder.replaceChildren(hint);
  const progress = followProgress((p) => { if (p.stage) hint.textContent = "auditing: " + describe(p); });
  try {
    const found = await postJson("/api/audit", {});
    const summary = found.summary;
    holder.replaceChildren(...[
      element("p", { id: "audit-summary" }, `${summary.label_issues} label issues (estimated noise ` +
        `${(summary.noise_rate * 100).toFixed(1)} %), ${summary.duplicate_groups} duplicate groups, ` +
        `${summary.outliers} outliers; accuracy ${summary.cv_accuracy.toFixed(3)}, ` +
        `${summary.cv_accuracy_unflagged.toFixed(3)} on what nothing was flagged on`),
      element("h3", {}, "Label issues"),
      found.label_issues.map((issue) => auditRow(issue.path,
        `given ${issue.given}, looks like ${issue.suggested} (${issue.score.toFixed(3)})`, issue.suggested)),
      element("h3", {}, "Duplicates"),
      found.duplicates.map((group) => element("div", { class: "issue" },
        group.paths.map((path) => itemOf(path)),
        element("div", { class: "why" }, `${group.exact ? "exact" : "near"} copies, similarity ${group.similarity.toFixed(4)}` +
          (group.conflicting ? ", across classes" : "")))),
      element("h3", {}, "Outliers"),
      found.outliers.map((outlier) => auditRow(outlier.path, `far from the rest (${outlier.score.toFixed(3)})`, null)),
    ].flat());
  } catch (error) { holder.replaceChildren(); failed(error); }
  finally { progress.close(); }
}

function auditRow(path, why, suggested) {
  const row = element("div", { class: "issue", "data-path": path }, itemOf(path, { actions: false }),
    element("div", { class: "why" }, why));
  const done = () => { row.style.opacity = "0.3"; };
  if (suggested) {
    row.append(element("button", { class: "small suggested", onclick: async () => { await moveImage(path, suggested); done(); } },
      `move to ${suggested}`));
  }
  row.append(element("button", { class: "small exclude", onclick: async () => { await trashImage(path); done(); } }, "exclude"),
    element("button", { class: "small keep", onclick: () => row.remove() }, "keep"));
  return row;
}

// ---- Try it ----

let answering = false;
// An image (or a text, as a text/plain blob) to the trained bundle.
async function tryInput(blob) {
  if (answering) return;
  answering = true;
  try {
    const sent = performance.now();
    const answer = await api("/api/predict", { method: "POST", body: blob });
    renderAnswer(answer, performance.now() - sent);
  } catch (error) { failed(error); }
  finally { answering = false; }
}

function renderAnswer({ answer, milliseconds }, roundTrip) {
  const holder = $("#try-result");
  holder.replaceChildren(
    element("div", { class: "answer", id: "answer" }, answer.label),
    answer.novelty === undefined ? null : element("div", { class: "hint", id: "novelty" },
      answer.novel ? `unlike anything it was trained on (novelty ${answer.novelty.toFixed(3)}): the classes below are its guess`
        : `like what it was trained on (novelty ${answer.novelty.toFixed(3)})`),
    element("div", { class: "bars" }, answer.top.map((t) => element("div", {},
      element("span", { class: "label" }, t.class),
      element("span", { class: "fill", style: `width: ${Math.round(t.probability * 240)}px` }),
      element("span", {}, (t.probability * 100).toFixed(1) + " %")))),
    element("div", { class: "hint", id: "answer-time", "data-round-trip": roundTrip.toFixed(1) },
      `answered in ${roundTrip.toFixed(0)} ms (${milliseconds.toFixed(0)} ms of it in the studio)`));
}

let webcam = null;
async function toggleWebcam() {
  const video = $("#try-video");
  if (webcam) {
    clearInterval(webcam.timer);
    webcam.stream.getTracks().forEach((track) => track.stop());
    webcam = null;
    video.hidden = true;
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    video.srcObject = stream;
    video.hidden = false;
    const canvas = document.createElement("canvas");
    const timer = setInterval(() => {
      if (!video.videoWidth || answering) return;
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      canvas.getContext("2d").drawImage(video, 0, 0);
      canvas.toBlob((blob) => blob && tryInput(blob), "image/jpeg", 0.85);
    }, 200);
    webcam = { stream, timer };
  } catch (error) { failed(error); }
}

// ---- Ship it ----

function tryText(event) {
  event.preventDefault();
  const text = $("#try-text").value;
  if (text.trim()) tryInput(new Blob([text], { type: "text/plain; charset=utf-8" }));
}

function renderShip() {
  const holder = $("#ship");
  if (!state.model) {
    holder.replaceChildren(element("p", { class: "hint" }, "Train first: then the bundle is here to take."));
    return;
  }
  const texts = isTexts();
  const exports = texts ? [["fp32", "backbone and head, token ids in"], ["head", "the head alone, embeddings in"]]
    : [["fp32", "backbone and head, float"], ["int8", "a quarter of the size"],
      ["raw", "uint8 pixels in, resizing in the graph"], ["head", "the head alone, embeddings in"]];
  holder.replaceChildren(
    element("p", {}, element("a", { href: "/api/bundle", download: "", id: "download-bundle" }, "Download the bundle (.hs)"),
      ` · ${state.model.head} head on ${state.model.samples} inputs, ${(state.model.accuracy * 100).toFixed(1)} % cross-validated`),
    element("p", {}, texts ? "One ONNX file (made on request):"
      : "One ONNX file for a device (made on request; int8 calibrates on this folder's images):"),
    element("ul", {}, exports.map(([kind, what]) => element("li", {},
      element("a", { href: "/api/export/" + kind, download: "", id: "export-" + kind }, `${kind}.onnx`), ` ${what}`))),
    element("p", {}, "Serve it to other programs:"),
    element("pre", {}, "headstart serve model.hs --port 8080\n" + (texts
      ? "curl -H 'content-type: application/json' -d '{\"inputs\": [\"where is my parcel?\"]}' http://127.0.0.1:8080/v1/models/model/predict"
      : "curl --data-binary @photo.jpg http://127.0.0.1:8080/v1/models/model/predict")),
    element("p", {}, "From Python:"),
    element("pre", {}, "import headstart\nbundle = headstart.load(\"model.hs\")\nbundle.predict([" +
      (texts ? "\"where is my parcel?\"" : "\"photo.jpg\"") + "])"));
}

// ---- Wiring ----

document.querySelectorAll("nav button").forEach((button) => button.addEventListener("click", () => showTab(button.dataset.tab)));
$("#add-class").addEventListener("click", addClass);
$("#new-class").addEventListener("keydown", (event) => { if (event.key === "Enter") addClass(); });
$("#train-form").addEventListener("submit", train);
$("#run-audit").addEventListener("click", runAudit);
$("#try-file").addEventListener("change", (event) => { const file = event.target.files[0]; if (file) tryInput(file); });
$("#try-webcam").addEventListener("click", toggleWebcam);
$("#try-texts").addEventListener("submit", tryText);
$("#add-texts").addEventListener("click", addTexts);
const tryDrop = $("#try-drop");
tryDrop.addEventListener("dragover", (event) => event.preventDefault());
tryDrop.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (file) tryInput(file);
});
document.addEventListener("paste", (event) => {
  const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (file && !isTexts()) { showTab("try"); tryInput(file); }
});
// The token was in the address once; the cookie carries it now, so it leaves the address bar.
if (location.search.includes("token=")) history.replaceState(null, "", "/");
loadData().catch(failed);
api("/api/model").then((report) => { if (report.trained) { state.model = report; renderTrained(report); } }).catch(() => {});
