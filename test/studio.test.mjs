// ovam studio: the HTTP API on generations and on a dataset of the bundled tiny model (token
// checks, bad requests, maps against the library's own attribute(), a dataset's labels and saved
// maps), and the page driven in a real headless Chromium: open an item, ask a word, switch the
// per-block view, move the threshold, paint and save ground truth, optimise a token, evaluate.
// Screenshots of each state go to .tap/studio-screens (or $STUDIO_SCREENS).
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";

import { root, readSafetensors } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const { decodePNG, decodeIndexedPNG } = require(path.join(root, "dist", "png.js"));
const puppeteer = require("puppeteer-core");

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const screens = process.env.STUDIO_SCREENS ?? path.join(root, ".tap", "studio-screens");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-studio-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Two generations of the tiny model (64×64), as ovam generate writes them.
const gens = path.join(tmp, "gens");
fs.mkdirSync(gens);
const sd = await ovam.load();
t.teardown(() => sd.dispose());
for (const [name, seed] of [["street", 1], ["park", 2]]) {
  const image = await ovam.generate(sd, { prompt: `a car in a ${name}`, steps: 2, seed });
  await image.save(path.join(gens, `${name}.safetensors`));
  image.dispose();
}
fs.writeFileSync(path.join(gens, "notes.safetensors"), "not a generation"); // skipped: not a generation file

const server = await ovam.startStudio(gens, { classes: ["car", "tree"] });
t.teardown(() => server.close());
const auth = { "x-ovam-token": server.token };

// A 2-item VOC dataset (car, person) with generation files and float32 maps, as ovam dataset makes
// it; then person-0000 loses its generation file (its class maps come from its maps file only),
// and the manifest gains lines that name files outside the folder, or through a link out of it.
const data = path.join(tmp, "data");
await ovam.dataset.run(
  {
    format: "voc",
    classes: [{ name: "car" }, { name: "person" }],
    prompts: { templates: ["a photograph of a {class}"], perClass: 1 },
    seeds: { base: 3 },
    generate: { steps: 2 },
    // DAAM's min-max normalisation: the tiny model's flat maps then label part of each image.
    masks: { preset: "daam" },
    save: { generation: true, maps: "float32" },
  },
  { out: data, pipeline: sd },
);
const lines = fs.readFileSync(path.join(data, "manifest.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
const [carLine, personLine] = lines;
fs.rmSync(path.join(data, personLine.files.generation));
delete personLine.files.generation;
fs.symlinkSync("/etc/passwd", path.join(data, "labels", "linked.png"));
const extra = [
  { ...carLine, id: "evil", files: { ...carLine.files, image: "../../../../etc/passwd" } },
  { ...carLine, id: "../up" },
  { ...carLine, id: "linked", files: { ...carLine.files, label: "labels/linked.png" } },
];
fs.writeFileSync(path.join(data, "manifest.jsonl"), [...lines, ...extra].map((l) => `${JSON.stringify(l)}\n`).join(""));
const dataServer = await ovam.startStudio(data);
t.teardown(() => dataServer.close());
const dataAuth = { "x-ovam-token": dataServer.token };

async function call(method, route, { body, headers = auth, raw, on = server } = {}) {
  const response = await fetch(`${new URL(on.url).origin}${route}`, {
    method,
    headers: { ...headers, ...(body === undefined && raw === undefined ? {} : { "content-type": "application/json" }) },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const type = response.headers.get("content-type") ?? "";
  return { status: response.status, headers: response.headers, body: type.includes("json") ? await response.json() : Buffer.from(await response.arrayBuffer()) };
}

const floats = (wire) => new Float32Array(Uint8Array.from(Buffer.from(wire.data, "base64")).buffer);
const onData = (method, route, options = {}) => call(method, route, { headers: dataAuth, on: dataServer, ...options });

// A headless Chromium page; its page errors are collected.
async function browse(t) {
  fs.mkdirSync(screens, { recursive: true });
  t.comment(`screenshots: ${screens}`);
  const profile = fs.mkdtempSync(path.join(tmp, "chromium-"));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--user-data-dir=${profile}`],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.setViewport({ width: 1280, height: 960 });
  return { page, errors };
}

// Page helpers: the canvas's pixels, a slider moved, a stroke of the brush in image pixels.
const canvasPixels = (page) => page.$eval("#canvas", (c) => c.toDataURL());
async function slide(page, id, value) {
  await page.$eval(
    `#${id}`,
    (e, v) => {
      e.value = v;
      e.dispatchEvent(new Event("input"));
    },
    value,
  );
}
async function canvasPoint(page) {
  const box = await page.$eval("#canvas", (c) => {
    const r = c.getBoundingClientRect();
    return { x: r.left, y: r.top, scale: r.width / 64 };
  });
  return (x, y) => [box.x + (x + 0.5) * box.scale, box.y + (y + 0.5) * box.scale];
}
async function brushStroke(page, points) {
  const to = await canvasPoint(page);
  await page.mouse.move(...to(...points[0]));
  await page.mouse.down();
  for (const p of points.slice(1)) await page.mouse.move(...to(...p));
  await page.mouse.up();
}

t.test("the token is required on every request", async (t) => {
  t.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{48}$/, "bound to 127.0.0.1, the token in the URL");
  for (const route of ["/", "/api/info", "/page/main.js", "/api/items/street/image.png"]) {
    const none = await call("GET", route, { headers: {} });
    t.equal(none.status, 401, `${route} without a token: 401`);
    t.equal(none.body.error.code, "ERR_OVAM_UNAUTHORIZED");
    const wrong = await call("GET", route, { headers: { "x-ovam-token": "0".repeat(48) } });
    t.equal(wrong.status, 403, `${route} with a wrong token: 403`);
    t.equal((await call("GET", `${route}${route.includes("?") ? "&" : "?"}token=nope`, { headers: {} })).status, 403, `${route} with a wrong ?token: 403`);
  }
  const first = await fetch(server.url, { redirect: "manual" });
  t.equal(first.status, 302, "the URL's token is exchanged for a cookie and dropped from the address");
  const cookie = first.headers.get("set-cookie");
  t.match(cookie, /^ovam_studio_token=[0-9a-f]{48}; HttpOnly; SameSite=Strict; Path=\//);
  const page = await fetch(`${new URL(server.url).origin}/`, { headers: { cookie: cookie.split(";")[0] } });
  t.equal(page.status, 200);
  t.match(await page.text(), /<script type="module" src="\/page\/main\.js">/);
});

t.test("items, classes and images", async (t) => {
  const info = await call("GET", "/api/info");
  t.same(
    info.body.classes.map((c) => [c.id, c.name]),
    [[1, "car"], [2, "tree"]],
  );
  t.equal(info.body.items, 2, "the file that is not a generation is not an item");
  const list = await call("GET", "/api/items");
  t.same(list.body.items.map((i) => i.id), ["park", "street"]);
  t.same(list.body.items[1].classes, [1, 2]);
  t.equal((await call("GET", "/api/items?class=tree")).body.total, 2);
  const png = await call("GET", "/api/items/street/image.png");
  t.equal(png.headers.get("content-type"), "image/png");
  const decoded = await decodePNG(png.body);
  const image = await ovam.loadGeneration(sd, path.join(gens, "street.safetensors"));
  t.same([decoded.width, decoded.height], [64, 64]);
  t.ok(Buffer.from(decoded.data).equals(Buffer.from(image.pixels)), "the image is the generation's pixels");
  image.dispose();
});

t.test("open-vocabulary maps are the library's attribute() of the text", async (t) => {
  const image = await ovam.loadGeneration(sd, path.join(gens, "street.safetensors"));
  t.teardown(() => image.dispose());
  for (const mode of ["softmax", "linear"]) {
    const answer = await call("POST", "/api/items/street/attribute", { body: { text: "shadow, windshield", mode } });
    t.equal(answer.status, 200, mode);
    const expected = await ovam.attribute(image, "shadow, windshield", { mode });
    t.same(answer.body.words.map((w) => w.word), ["shadow", "windshield"], "words without punctuation");
    t.same(answer.body.tokens, expected.tokens);
    for (const w of answer.body.words) {
      t.same([w.width, w.height, w.dtype], [64, 64, "float32"]);
      t.same(floats(w), expected.word(w.word).data, `${mode} map of "${w.word}"`);
    }
    t.ok(answer.body.ms >= 0 && answer.body.ms < 1000, `answered in ${answer.body.ms.toFixed(1)} ms`);
  }
  const classes = await call("GET", "/api/items/street/maps");
  t.same(classes.body.maps.map((m) => [m.class, m.by]), [["car", "text"], ["tree", "text"]]);
  t.same(floats(classes.body.maps[0]), (await ovam.attribute(image, "car")).word("car").data, "a class map is its name's map");
});

t.test("bad requests get clear 4xx answers and the server carries on", async (t) => {
  const cases = [
    ["GET", "/api/items/..%2F..%2Fetc%2Fpasswd/image.png", undefined, 400, /item id .* is malformed/],
    ["GET", "/api/items/.env/gt", undefined, 400, /malformed/],
    ["GET", "/api/items/..%5C..%5Cwindows/gt", undefined, 400, /malformed/],
    ["PUT", "/api/items/..%2Fgens/gt", { width: 64, height: 64, data: "" }, 400, /malformed/],
    ["GET", "/api/items/nowhere/image.png", undefined, 404, /no item "nowhere"/],
    ["GET", "/api/items?class=unicorn", undefined, 400, /unknown class "unicorn"; accepted: "car" \(1\), "tree" \(2\)/],
    ["GET", "/api/items?limit=-3", undefined, 400, /limit/],
    ["POST", "/api/items/street/attribute", { text: "" }, 400, /text/],
    ["POST", "/api/items/street/attribute", { text: "?!" }, 400, /has no words/],
    ["POST", "/api/items/street/attribute", { text: "car", mode: "cubic" }, 400, /mode/],
    ["POST", "/api/items/street/attribute", { text: "x".repeat(5000) }, 400, /text/],
    ["POST", "/api/items/street/attribute", { text: "car", extra: 1 }, 400, /extra/],
    ["PUT", "/api/items/street/gt", { width: 100000, height: 100000, data: "" }, 400, /width/],
    ["PUT", "/api/items/street/gt", { width: 32, height: 32, data: Buffer.alloc(1024).toString("base64") }, 400, /accepted: 64×64 values/],
    ["PUT", "/api/items/street/gt", { width: 64, height: 64, data: Buffer.alloc(4096, 77).toString("base64") }, 400, /holds label 77/],
    ["POST", "/api/jobs/optimize", { class: "car" }, 400, /no item labelled for "car" has ground truth/],
    ["POST", "/api/jobs/optimize", { class: "unicorn" }, 400, /unknown class/],
    ["POST", "/api/jobs/eval", {}, 400, /no item has ground truth/],
    ["POST", "/api/jobs/eval", { x: 1 }, 400, /x/],
    ["GET", "/api/jobs/abc", undefined, 404, /no job "abc"/],
    ["GET", "/page/..%2F..%2Findex.js", undefined, 404, /no page file/],
    ["DELETE", "/api/items/street", undefined, 404, /no route DELETE/],
  ];
  for (const [method, route, body, status, pattern] of cases) {
    const answer = await call(method, route, { body });
    t.equal(answer.status, status, `${method} ${route} → ${status}`);
    t.match(answer.body.error?.message, pattern, answer.body.error?.message);
    t.match(answer.body.error?.code, /^(ERR_OVAM_|FST_)/);
  }
  const malformed = await call("POST", "/api/items/street/attribute", { raw: "{not json" });
  t.equal(malformed.status, 400, "malformed JSON: 400");
  // A body far over any image: refused before it is read whole.
  const huge = await call("PUT", "/api/items/street/gt", { raw: JSON.stringify({ width: 64, height: 64, data: "A".repeat(32 << 20) }) });
  t.equal(huge.status, 413, "a 32 MB ground truth: 413");
  t.equal((await call("GET", "/api/info")).status, 200, "the server still answers");
  t.notOk(fs.existsSync(path.join(gens, "gt", "street.png")), "nothing was written");
});

t.test("the page in headless Chromium: ask a word, threshold, paint, save, optimise", { timeout: 300_000 }, async (t) => {
  const { page, errors } = await browse(t);
  await page.goto(server.url);
  t.equal(new URL(page.url()).search, "", "the token left the address bar");
  await page.waitForSelector("body[data-ready]");
  t.same(await page.$$eval("#items button", (b) => b.map((x) => x.dataset.id)), ["park", "street"], "thumbnails of both items");
  await page.screenshot({ path: path.join(screens, "1-browse.png"), fullPage: true });

  await page.click('#items button[data-id="street"]');
  await page.waitForSelector('#layers button[data-layer="car (text)"]');
  await page.type("#words", "shadow windshield");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#ask-time").textContent.includes("ms in the server"));
  t.match(await page.$eval("#ask-time", (e) => e.textContent), /^shadow, windshield: \d+ ms in the server, \d+ ms in all$/);
  t.same(await page.$$eval("#layers button", (b) => b.map((x) => x.textContent)), ["car (text)", "tree (text)", '"shadow"', '"windshield"']);
  t.equal(await page.$eval("#layers button.shown", (b) => b.textContent), '"shadow"', "the first word's map is shown");
  await page.screenshot({ path: path.join(screens, "2-word-map.png"), fullPage: true });

  const at50 = await canvasPixels(page);
  await slide(page, "threshold", "0.7");
  t.equal(await page.$eval("#threshold-value", (e) => e.value), "0.70");
  t.not(await canvasPixels(page), at50, "moving the threshold redraws the mask");
  await page.screenshot({ path: path.join(screens, "3-threshold.png"), fullPage: true });

  // Paint "car" with the brush along a diagonal, then a "tree" triangle with the polygon tool.
  await page.select("#paint-class", "1");
  await page.$eval("#brush-size", (e) => (e.value = "6"));
  await brushStroke(page, [[10, 10], ...Array.from({ length: 10 }, (_, i) => [11 + 3 * i, 11 + 3 * i])]);
  await page.select("#paint-class", "2");
  const to = await canvasPoint(page);
  await page.click('input[name="tool"][value="polygon"]');
  for (const [x, y] of [[45, 5], [60, 5], [60, 20]]) await page.mouse.click(...to(x, y));
  await page.mouse.click(...to(60, 20), { clickCount: 2 });
  await page.click("#save");
  await page.waitForFunction(() => document.querySelector("#save-status").textContent.startsWith("saved"));
  await page.screenshot({ path: path.join(screens, "4-painted.png"), fullPage: true });

  const file = path.join(gens, "gt", "street.png");
  t.equal(await page.$eval("#save-status", (e) => e.textContent), `saved ${file}`);
  const gt = await decodePNG(fs.readFileSync(file));
  t.same([gt.width, gt.height, gt.channels], [64, 64, 1], "a 64×64 grey PNG of class ids");
  const label = (x, y) => gt.data[y * 64 + x];
  t.same([label(10, 10), label(25, 25), label(40, 40)], [1, 1, 1], "the brush stroke is car (1)");
  t.same([label(58, 8), label(59, 6)], [2, 2], "inside the polygon is tree (2)");
  t.same([label(0, 63), label(63, 63), label(46, 19)], [0, 0, 0], "elsewhere is background (0)");
  t.same(new Set(gt.data), new Set([0, 1, 2]));
  const served = await call("GET", "/api/items/street/gt");
  t.same(Buffer.from(served.body.data, "base64"), Buffer.from(gt.data), "GET gt returns what was saved");
  t.same((await call("GET", "/api/items?annotated=true")).body.items.map((i) => i.id), ["street"]);
  const byForeground = (await call("GET", "/api/items?class=car&minForeground=0.01")).body.items;
  t.same(byForeground.map((i) => i.id), ["street"], "filtered by the car fraction of the ground truth");
  t.equal(byForeground[0].foreground.car, gt.data.filter((v) => v === 1).length / 4096);
  t.same((await call("GET", "/api/items?maxForeground=0.01")).body.items.map((i) => i.id), ["park"]);

  await page.select("#job-class", "1");
  await page.$eval("#epochs", (e) => (e.value = "4"));
  await page.click("#optimize");
  await page.waitForFunction(() => /token saved|\[/.test(document.querySelector("#job-status").textContent), { timeout: 120_000 });
  const status = await page.$eval("#job-status", (e) => e.textContent);
  t.match(status, /^token saved to .*tokens\/car\.safetensors \(from 1 annotated item\(s\): street\)/, status);
  await page.waitForSelector('#layers button[data-layer="car (token)"]');
  await page.screenshot({ path: path.join(screens, "5-optimised.png"), fullPage: true });
  const token = await ovam.loadToken(path.join(gens, "tokens", "car.safetensors"));
  t.equal(token.losses.length, 4, "four epochs' losses");

  await page.click("#evaluate");
  await page.waitForFunction(() => /Binary protocol|\[/.test(document.querySelector("#job-status").textContent), { timeout: 120_000 });
  const shown = await page.$eval("#job-status", (e) => e.textContent);
  t.match(shown, /Binary protocol: 1 items/, "the report's table is shown");
  t.match(shown, /Class maps: car by its token, tree by its text/);
  await page.screenshot({ path: path.join(screens, "6-evaluated.png"), fullPage: true });
  const written = JSON.parse(fs.readFileSync(path.join(gens, "eval", "report.json"), "utf8"));
  // The same evaluation made by the library: the token's and the name's maps against the saved ground truth.
  const image = await ovam.loadGeneration(sd, path.join(gens, "street.safetensors"));
  const maps = {
    car: (await ovam.attribute(image, token, { size: "latent" })).word("car"),
    tree: (await ovam.attribute(image, "tree", { size: "latent" })).word("tree"),
  };
  image.dispose();
  const expected = await ovam.evaluate([{ id: "street", maps, truth: { data: gt.data, width: 64, height: 64 } }], { protocol: "both", classes: { car: 1, tree: 2 } });
  t.same(written.binary.at, expected.binary.at, "binary protocol as ovam.evaluate() scores it");
  t.same(written.semantic.iou, expected.semantic.iou, "semantic protocol as ovam.evaluate() scores it");
  t.same(errors, [], "no errors in the page");
});

t.test("a dataset folder: items from the manifest, labels, saved maps, per-block maps", async (t) => {
  const info = await onData("GET", "/api/info");
  t.match(info.body, { kind: "dataset", root: data, background: 0, perBlock: true });
  t.same(info.body.classes.map((c) => [c.id, c.name, c.color]), [[7, "car", [128, 128, 128]], [15, "person", [192, 128, 128]]], "VOC ids and colours from dataset.json");
  t.same((await onData("GET", "/api/items")).body.items.map((i) => i.id), ["car-0000", "person-0000", "linked"], "the manifest's items; a line whose id names a path or whose files lie outside is not listed");
  t.same((await onData("GET", "/api/items?class=person")).body.items.map((i) => i.id), ["person-0000"], "filtered by class");
  const [car, person] = [carLine.foreground.car, personLine.foreground.person];
  t.ok(car > 0 && car < 1 && person > 0 && person < 1 && car !== person, `the manifest's foreground fractions: car ${car}, person ${person}`);
  const cut = (car + person) / 2;
  const [above, below] = car > person ? [["car-0000", "linked"], ["person-0000"]] : [["person-0000"], ["car-0000", "linked"]];
  const ids = async (query) => (await onData("GET", `/api/items?${query}`)).body.items.map((i) => i.id);
  t.same(await ids(`minForeground=${cut}`), above, "filtered by the manifest's foreground fraction");
  t.same(await ids(`maxForeground=${cut}`), below);
  t.same(await ids(`class=car&minForeground=${car}&maxForeground=${car}`), ["car-0000", "linked"]);

  const labels = await onData("GET", "/api/items/car-0000/labels");
  t.same([labels.body.width, labels.body.height, labels.body.dtype], [64, 64, "uint8"]);
  const file = await decodeIndexedPNG(fs.readFileSync(path.join(data, carLine.files.label)));
  t.ok(Buffer.from(labels.body.data, "base64").equals(Buffer.from(file.indices)), "the labels PNG's class ids");

  for (const line of [carLine, personLine]) {
    const maps = await onData("GET", `/api/items/${line.id}/maps`);
    const [name] = Object.keys(line.foreground);
    const saved = readSafetensors(path.join(data, line.files.maps))[name];
    t.same(maps.body.maps.map((m) => [m.class, m.by, m.width, m.height]), [[name, "saved", 8, 8]], `${line.id}: its class map from maps/ at the attention grid`);
    t.same(floats(maps.body.maps[0]), saved.data, `${line.id}: the maps file's values`);
  }

  const image = await ovam.loadGeneration(sd, path.join(data, carLine.files.generation));
  t.teardown(() => image.dispose());
  const blocks = (await onData("GET", "/api/items/car-0000/blocks")).body.blocks;
  t.same(blocks, image.blocks.map(({ name, height, width }) => ({ name, height, width })), "the capture's blocks");
  const all = await onData("POST", "/api/items/car-0000/attribute", { body: { text: "a red car" } });
  t.same(floats(all.body.words[2]), (await ovam.attribute(image, "a red car")).word("car").data, "a typed word's map from the item's generation file");
  const side = Math.max(blocks[0].height, blocks[0].width);
  for (const block of [blocks[0].name, side]) {
    const one = await onData("POST", "/api/items/car-0000/attribute", { body: { text: "a red car", block } });
    t.equal(one.status, 200, `block ${block}`);
    t.equal(one.body.block, block);
    const expected = (await ovam.attribute(image, "a red car", { blocks: [block] })).word("car").data;
    t.same(floats(one.body.words[2]), expected, `the word's map from block ${block} alone`);
    const whole = floats(all.body.words[2]);
    t.ok(expected.some((v, i) => v !== whole[i]), "differs from all blocks' map");
    t.ok(one.body.ms >= 0, `${one.body.ms.toFixed(1)} ms`);
  }

  const cases = [
    ["GET", "/api/items/evil/image.png", undefined, 400, /item "evil" is refused: its manifest line names "..\/..\/..\/..\/etc\/passwd", outside the dataset folder/],
    ["GET", "/api/items/..%2Fup/labels", undefined, 400, /malformed/],
    ["GET", "/api/items/linked/labels", undefined, 400, /leads outside/],
    ["GET", "/api/items/car-0000/labels/..%2F..%2Fdataset.json", undefined, 404, /no route/],
    ["POST", "/api/items/person-0000/attribute", { text: "person" }, 400, /item "person-0000" has no generation file/],
    ["GET", "/api/items/person-0000/blocks", undefined, 400, /no generation file/],
    ["POST", "/api/items/car-0000/attribute", { text: "car", block: "down_blocks.9" }, 400, /blocks.*accepted: a stored block name/],
    ["POST", "/api/items/car-0000/attribute", { text: "car", block: 7 }, 400, /blocks/],
    ["POST", "/api/items/car-0000/attribute", { text: "car", block: 1e9 }, 400, /block/],
    ["PUT", "/api/items/car-0000/gt", { width: 64, height: 64, data: Buffer.alloc(4096, 3).toString("base64") }, 400, /holds label 3; accepted: the background \(0\), 255 \(ignore\) or a class id/],
  ];
  for (const [method, route, body, status, pattern] of cases) {
    const answer = await onData(method, route, { body });
    t.equal(answer.status, status, `${method} ${route} → ${status}`);
    t.match(answer.body.error?.message, pattern, answer.body.error?.message);
  }
  await t.rejects(ovam.startStudio(data, { classes: ["tree"] }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /is a dataset folder, whose classes are its dataset\.json's/ });
  t.equal((await onData("GET", "/api/info", { headers: {} })).status, 401, "no token: refused");
  t.equal((await onData("GET", "/api/info", { headers: auth })).status, 403, "another studio's token: refused");
  t.equal((await onData("GET", "/api/info")).status, 200, "the server still answers");
});

t.test("a dataset in headless Chromium: labels, a word, the per-block view, threshold, ground truth from the labels, evaluate, optimise", { timeout: 300_000 }, async (t) => {
  const { page, errors } = await browse(t);
  await page.goto(dataServer.url);
  await page.waitForSelector("body[data-ready]");
  t.match(await page.$eval("#source", (e) => e.textContent), /^dataset /);
  t.same(await page.$$eval("#items button", (b) => b.map((x) => x.dataset.id)), ["car-0000", "person-0000", "linked"], "thumbnails");
  await page.select("#filter-class", "15");
  await page.waitForFunction(() => document.querySelectorAll("#items button").length === 1);
  t.same(await page.$$eval("#items button", (b) => b.map((x) => x.dataset.id)), ["person-0000"], "filtered by class in the page");
  await page.screenshot({ path: path.join(screens, "d1-dataset-filtered.png"), fullPage: true });

  await page.click('#items button[data-id="person-0000"]');
  await page.waitForSelector('#layers button[data-layer="person (saved)"]');
  t.ok(await page.$eval("#ask", (e) => e.hidden), "no word box without a generation file");

  await page.select("#filter-class", "");
  await page.waitForSelector('#items button[data-id="car-0000"]');
  await page.click('#items button[data-id="car-0000"]');
  await page.waitForSelector('#layers button[data-layer="car (saved)"]');
  t.equal(await page.$eval("#layers button.shown", (b) => b.textContent), "labels", "the dataset's labels are shown first");
  await page.screenshot({ path: path.join(screens, "d2-labels.png"), fullPage: true });

  await page.type("#words", "a red car");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#ask-time").textContent.includes("ms in the server"));
  t.match(await page.$eval("#ask-time", (e) => e.textContent), /^a, red, car: \d+ ms in the server/);
  await page.click('#layers button[data-layer=\'"car"\']');
  await page.click("#as-mask");
  const allBlocks = await canvasPixels(page);
  await page.screenshot({ path: path.join(screens, "d3-word-map.png"), fullPage: true });

  const choices = await page.$$eval("#block option", (o) => o.map((x) => x.value));
  const side = choices.find((v) => /^\d+$/.test(v));
  t.ok(side && choices.length > 2, `per-block choices: ${choices.join(", ")}`);
  await page.select("#block", side);
  await page.waitForFunction((s) => document.querySelector("#ask-time").textContent.includes(`from the ${s}×${s} blocks`), {}, side);
  t.match(await page.$eval("#ask-time", (e) => e.textContent), new RegExp(`^a, red, car from the ${side}×${side} blocks: \\d+ ms in the server`));
  await page.click('#layers button[data-layer=\'"car"\']');
  t.not(await canvasPixels(page), allBlocks, "the map of one resolution's blocks is another picture");
  await page.screenshot({ path: path.join(screens, "d4-per-block.png"), fullPage: true });

  await page.click("#as-mask");
  const at50 = await canvasPixels(page);
  await slide(page, "threshold", "0.3");
  t.not(await canvasPixels(page), at50, "moving the threshold redraws the mask");
  await page.screenshot({ path: path.join(screens, "d5-threshold.png"), fullPage: true });

  // Ground truth: the dataset's labels, then a stroke of "person" (15) across the top rows.
  await page.click("#from-labels");
  await page.select("#paint-class", "15");
  await page.$eval("#brush-size", (e) => (e.value = "2"));
  await brushStroke(page, [[2, 2], [30, 2], [60, 2]]);
  await page.click("#save");
  await page.waitForFunction(() => document.querySelector("#save-status").textContent.startsWith("saved"));
  await page.screenshot({ path: path.join(screens, "d6-ground-truth.png"), fullPage: true });
  const gt = await decodePNG(fs.readFileSync(path.join(data, "gt", "car-0000.png")));
  t.same([gt.width, gt.height, gt.channels], [64, 64, 1], "gt/car-0000.png: 8-bit class ids");
  const labels = (await decodeIndexedPNG(fs.readFileSync(path.join(data, carLine.files.label)))).indices;
  const changed = [...gt.data.keys()].filter((i) => gt.data[i] !== labels[i]);
  t.ok(changed.length > 0 && changed.every((i) => gt.data[i] === 15 && Math.floor(i / 64) <= 4), `the labels but for ${changed.length} painted person pixels in the top rows`);
  t.same([gt.data[2 * 64 + 30], gt.data[2 * 64 + 60]], [15, 15], "the stroke is person (15)");
  t.same(new Set(gt.data), new Set([...labels, 15]));

  await page.click("#evaluate");
  await page.waitForFunction(() => /Binary protocol|\[/.test(document.querySelector("#job-status").textContent), { timeout: 120_000 });
  t.match(await page.$eval("#job-status", (e) => e.textContent), /Binary protocol: 1 items[\s\S]*Class maps: car from the dataset's maps/, "evaluated from the saved maps");

  // A token for "car" from the annotated item: its class map switches from the saved one to the token's.
  await page.select("#job-class", "7");
  await page.$eval("#epochs", (e) => (e.value = "2"));
  await page.click("#optimize");
  await page.waitForFunction(() => /token saved|\[/.test(document.querySelector("#job-status").textContent), { timeout: 120_000 });
  t.match(await page.$eval("#job-status", (e) => e.textContent), /^token saved to .*tokens\/car\.safetensors \(from 1 annotated item\(s\): car-0000\)/);
  await page.waitForSelector('#layers button[data-layer="car (token)"]');
  t.same((await onData("GET", "/api/items/person-0000/maps")).body.maps.map((m) => m.by), ["saved"], "an item without a token for its class keeps its saved map");
  t.same(errors, [], "no errors in the page");
});

t.test("ovam studio on the command line prints the address and stops on Ctrl-C", async (t) => {
  const child = spawn(process.execPath, [path.join(root, "dist", "cli.js"), "studio", gens, "--classes", "car", "--json", "--no-open"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const result = await new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const line = out.split("\n").find((l) => l.includes('"result"'));
      if (line) resolve(JSON.parse(line));
    });
    child.on("exit", (code) => reject(new Error(`exited ${code} before printing its address: ${out}`)));
  });
  t.equal(result.items, 2);
  const info = await fetch(result.url.replace("/?token=", "/api/info?token="));
  t.equal(info.status, 200);
  t.same((await info.json()).classes.map((c) => c.name), ["car"]);
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  child.kill("SIGINT");
  t.equal(await exited, 130, "Ctrl-C closes the server (status 130, interrupted, as for every command)");
  await t.rejects(fetch(result.url), "nothing listens any more");
});
