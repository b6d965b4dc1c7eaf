// The studio page: the item browser, the viewer with its layers (a dataset's labels among them)
// and sliders, the word box with its per-block view, the ground-truth painter and the token
// optimisation panel, wired to the API.
import { api, ApiError, floats, type Block, type Info, type Item, type Job, type Plane } from "./api.js";
import { draw, drawLosses, layer, thresholded, type Layer } from "./overlay.js";
import { brush, fillPolygon, stroke } from "./paint.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const canvas = $<HTMLCanvasElement>("canvas");
const WORD_COLOR: [number, number, number] = [255, 210, 0];

let info: Info;
let current:
  | { item: Item; image: HTMLImageElement; truth: Plane<Uint8Array>; labels?: Plane<Uint8Array>; layers: Map<string, Layer>; shown?: string }
  | undefined;
const LABELS = "labels";
let polygon: [number, number][] = [];

function say(id: string, text: string, error = false): void {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", error);
}

function message(error: unknown): string {
  return error instanceof ApiError ? `${error.message} [${error.status} ${error.code}]` : String(error);
}

function options(select: HTMLSelectElement, entries: [string, string][]): void {
  for (const [value, label] of entries) select.add(new Option(label, value));
}

function tool(): string {
  return (document.querySelector('input[name="tool"]:checked') as HTMLInputElement).value;
}

function redraw(): void {
  if (!current) return;
  const { item, image, truth, labels, layers, shown } = current;
  const scale = Math.max(1, Math.floor(512 / Math.max(item.width, item.height)));
  const colors = new Map(info.classes.map((c) => [c.id, c.color] as const));
  const threshold = Number($<HTMLInputElement>("threshold").value);
  $<HTMLOutputElement>("threshold-value").value = threshold.toFixed(2);
  draw(canvas, {
    image,
    width: item.width,
    height: item.height,
    scale,
    layer: shown ? layers.get(shown) : undefined,
    labels: shown === LABELS ? labels : undefined,
    asMask: $<HTMLInputElement>("as-mask").checked,
    threshold,
    opacity: Number($<HTMLInputElement>("opacity").value),
    truth,
    colors,
    polygon,
  });
}

function showLayers(): void {
  const box = $("layers");
  box.replaceChildren();
  if (!current) return;
  for (const label of [...(current.labels ? [LABELS] : []), ...current.layers.keys()]) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.dataset.layer = label;
    button.classList.toggle("shown", label === current.shown);
    button.onclick = () => {
      if (!current) return;
      current.shown = current.shown === label ? undefined : label;
      showLayers();
      redraw();
    };
    box.append(button);
  }
}

async function listItems(): Promise<void> {
  const query: Record<string, string> = {};
  const cls = $<HTMLSelectElement>("filter-class").value;
  if (cls) query.class = cls;
  const [min, max] = [$<HTMLInputElement>("filter-min").value, $<HTMLInputElement>("filter-max").value];
  if (min !== "0" || max !== "1") Object.assign(query, { minForeground: min, maxForeground: max });
  if ($<HTMLInputElement>("filter-annotated").checked) query.annotated = "true";
  const { total, items } = await api.items(query);
  say("count", `${total} item(s)${total > items.length ? `, first ${items.length} shown` : ""}`);
  $("items").replaceChildren(
    ...items.map((item) => {
      const button = document.createElement("button");
      button.dataset.id = item.id;
      button.title = item.prompt;
      button.classList.toggle("open", item.id === current?.item.id);
      const img = document.createElement("img");
      img.src = api.imageURL(item.id);
      img.alt = item.prompt;
      const caption = document.createElement("span");
      caption.textContent = item.id;
      caption.classList.toggle("gt", Boolean(item.annotated));
      button.append(img, caption);
      button.onclick = () => open(item.id).catch((e) => say("item-prompt", message(e), true));
      return button;
    }),
  );
}

async function open(id: string): Promise<void> {
  const item = await api.item(id);
  const image = new Image();
  image.src = api.imageURL(id);
  await image.decode();
  const saved = await api.truth(id);
  const truth = saved ?? { width: item.width, height: item.height, data: new Uint8Array(item.width * item.height).fill(info.background) };
  const labels = info.kind === "dataset" ? await api.labels(id) : undefined;
  current = { item, image, truth, labels, layers: new Map(), shown: labels ? LABELS : undefined };
  polygon = [];
  const live = Boolean(item.files?.generation);
  $("ask").hidden = !live;
  $("from-labels").hidden = !labels;
  listBlocks(live ? (await api.blocks(id)).blocks : []);
  $("viewer").hidden = false;
  $("item-title").textContent = `${item.id}${saved ? " (ground truth saved)" : ""}`;
  $("item-prompt").textContent = item.prompt;
  for (const b of document.querySelectorAll<HTMLButtonElement>("#items button")) b.classList.toggle("open", b.dataset.id === id);
  say("save-status", "");
  showLayers();
  redraw();
  if (item.classes.length > 0) await loadClassMaps();
}

async function loadClassMaps(): Promise<void> {
  if (!current) return;
  const target = current;
  const { maps } = await api.maps(target.item.id);
  for (const m of maps) {
    const color = info.classes.find((c) => c.id === m.id)?.color ?? WORD_COLOR;
    target.layers.set(`${m.class} (${m.by})`, layer(m.class, floats(m), color, target.item.width, target.item.height));
  }
  target.shown ??= maps.length ? `${maps[0].class} (${maps[0].by})` : undefined;
  if (current === target) {
    showLayers();
    redraw();
  }
}

// The per-block view's choices: all blocks, each resolution (a grid's longer side) and each block.
function listBlocks(blocks: Block[]): void {
  const select = $<HTMLSelectElement>("block");
  select.length = 1;
  const sides = [...new Set(blocks.map((b) => Math.max(b.height, b.width)))].sort((a, b) => a - b);
  options(select, sides.map((side) => [String(side), `${side}×${side} blocks (${blocks.filter((b) => Math.max(b.height, b.width) === side).length})`]));
  options(select, blocks.map((b) => [b.name, `${b.name} (${b.width}×${b.height})`]));
}

// The chosen block: a resolution (digits) or a block's name; undefined for all blocks.
function chosenBlock(): string | number | undefined {
  const value = $<HTMLSelectElement>("block").value;
  return value === "" ? undefined : /^\d+$/.test(value) ? Number(value) : value;
}

async function ask(event?: Event): Promise<void> {
  event?.preventDefault();
  if (!current) return;
  const text = $<HTMLInputElement>("words").value.trim();
  if (!text) return;
  const started = performance.now();
  const block = chosenBlock();
  say("ask-time", "…");
  try {
    const answer = await api.attribute(current.item.id, text, $<HTMLSelectElement>("mode").value, block);
    for (const w of answer.words) current.layers.set(`"${w.word}"`, layer(w.word, floats(w), WORD_COLOR, current.item.width, current.item.height));
    current.shown = `"${answer.words[0].word}"`;
    showLayers();
    redraw();
    const from = block === undefined ? "" : ` from ${typeof block === "number" ? `the ${block}×${block} blocks` : block}`;
    say("ask-time", `${answer.words.map((w) => w.word).join(", ")}${from}: ${answer.ms.toFixed(0)} ms in the server, ${(performance.now() - started).toFixed(0)} ms in all`);
  } catch (error) {
    say("ask-time", message(error), true);
  }
}

// Image pixel under a pointer event.
function pixel(event: MouseEvent): [number, number] {
  const rect = canvas.getBoundingClientRect();
  const { width, height } = current!.item;
  return [
    Math.min(width - 1, Math.max(0, Math.floor(((event.clientX - rect.left) / rect.width) * width))),
    Math.min(height - 1, Math.max(0, Math.floor(((event.clientY - rect.top) / rect.height) * height))),
  ];
}

function paintValue(): number {
  return tool() === "erase" ? info.background : Number($<HTMLSelectElement>("paint-class").value);
}

let last: [number, number] | undefined;
canvas.addEventListener("pointerdown", (event) => {
  if (!current || info.classes.length === 0) return;
  const at = pixel(event);
  if (tool() === "polygon") {
    polygon.push(at);
  } else {
    canvas.setPointerCapture(event.pointerId);
    last = at;
    brush(current.truth, at[0], at[1], Number($<HTMLInputElement>("brush-size").value) / 2, paintValue());
  }
  say("save-status", "unsaved changes");
  redraw();
});
canvas.addEventListener("pointermove", (event) => {
  if (!current || !last) return;
  const at = pixel(event);
  stroke(current.truth, last, at, Number($<HTMLInputElement>("brush-size").value) / 2, paintValue());
  last = at;
  redraw();
});
canvas.addEventListener("pointerup", () => (last = undefined));
canvas.addEventListener("dblclick", () => {
  if (!current || tool() !== "polygon") return;
  fillPolygon(current.truth, polygon, Number($<HTMLSelectElement>("paint-class").value));
  polygon = [];
  redraw();
});

$("from-map").onclick = () => {
  const shown = current?.shown ? current.layers.get(current.shown) : undefined;
  if (!current || !shown) return say("save-status", "show a map first", true);
  const value = Number($<HTMLSelectElement>("paint-class").value);
  const mask = thresholded(shown, Number($<HTMLInputElement>("threshold").value));
  mask.forEach((on, i) => {
    if (on) current!.truth.data[i] = value;
  });
  say("save-status", "unsaved changes");
  redraw();
};
$("from-labels").onclick = () => {
  if (!current?.labels) return;
  current.truth.data.set(current.labels.data);
  say("save-status", "unsaved changes");
  redraw();
};
$("clear").onclick = () => {
  current?.truth.data.fill(info.background);
  redraw();
};
$("save").onclick = async () => {
  if (!current) return;
  try {
    const { file } = await api.saveTruth(current.item.id, current.truth);
    say("save-status", `saved ${file}`);
    $("item-title").textContent = `${current.item.id} (ground truth saved)`;
    await listItems();
  } catch (error) {
    say("save-status", message(error), true);
  }
};

// Runs a job, drawing its losses as they come; returns its result, or undefined when it failed.
async function runJob(start: () => Promise<Job>, epochs: number, what: string): Promise<Record<string, unknown> | undefined> {
  try {
    let job = await start();
    say("job-status", `${what}…`);
    while (job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, 250));
      job = await api.job(job.id);
      if (job.progress.losses.length) drawLosses($<HTMLCanvasElement>("loss"), job.progress.losses, epochs);
      else if (job.progress.total) say("job-status", `${what}: ${job.progress.done}/${job.progress.total}`);
    }
    if (job.state === "done") return job.result;
    say("job-status", `${job.error?.message} [${job.error?.code}]`, true);
  } catch (error) {
    say("job-status", message(error), true);
  }
  return undefined;
}

$("optimize").onclick = async () => {
  const epochs = Number($<HTMLInputElement>("epochs").value);
  const result = (await runJob(() => api.optimize($<HTMLSelectElement>("job-class").value, epochs), epochs, "optimising")) as { token: string; items: string[] } | undefined;
  if (!result) return;
  say("job-status", `token saved to ${result.token} (from ${result.items.length} annotated item(s): ${result.items.join(", ")}); class maps now use it`);
  if (current) {
    current.shown = undefined;
    await loadClassMaps();
  }
};

$("evaluate").onclick = async () => {
  const result = (await runJob(() => api.evaluate(), 0, "evaluating")) as { table: string; by: Record<string, string>; files: string[] } | undefined;
  if (!result) return;
  const by = Object.entries(result.by).map(([name, kind]) => (kind === "saved" ? `${name} from the dataset's maps` : `${name} by its ${kind}`));
  say("job-status", `${result.table}\n\nClass maps: ${by.join(", ")}. Written: ${result.files.join(", ")}`);
};

for (const id of ["opacity", "threshold", "as-mask"]) $(id).addEventListener("input", redraw);
$("filters").addEventListener("change", () => listItems().catch((e) => say("count", message(e), true)));
$("ask").addEventListener("submit", (event) => void ask(event));
$("block").addEventListener("change", () => void ask());

async function start(): Promise<void> {
  info = await api.info();
  say("source", `${info.kind} ${info.root}: ${info.items} item(s), model ${info.model}`);
  const classes: [string, string][] = info.classes.map((c) => [String(c.id), c.name]);
  options($<HTMLSelectElement>("filter-class"), classes);
  options($<HTMLSelectElement>("paint-class"), classes);
  options($<HTMLSelectElement>("job-class"), classes);
  $("paint").hidden = info.classes.length === 0;
  $("jobs").hidden = info.classes.length === 0;
  await listItems();
  document.body.dataset.ready = "true";
}

start().catch((error) => say("source", message(error), true));
