// The safetensors reader against malformed input: every defect is reported with
// ERR_OVAM_SAFETENSORS and a message naming it (and the tensor at fault), never a crash.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { modelDir, native } from "./helpers/golden.mjs";
import { prng } from "./helpers/prng.mjs";
import { encode, readEntries } from "./helpers/safetensors-writer.mjs";

const inspect = (source) => native().components.safetensors(source);
const vaeFile = path.join(modelDir("sd1"), "vae", "diffusion_pytorch_model.safetensors");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-safetensors-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  return null;
}

// Asserts a coded rejection whose message matches every pattern; prints the message.
async function rejects(t, promise, patterns, code = "ERR_OVAM_SAFETENSORS") {
  const e = await rejection(promise);
  if (!t.ok(e, "rejects")) return;
  t.equal(e.code, code, `code (message: ${e.message})`);
  for (const p of [].concat(patterns)) t.match(e.message, p, `message names the problem: ${p}`);
}

const f32 = (name, shape, begin) => {
  const bytes = 4 * shape.reduce((a, b) => a * b, 1);
  return [name, { dtype: "F32", shape, data_offsets: [begin, begin + bytes] }];
};

t.test("a valid buffer lists names, dtypes and shapes", async (t) => {
  const header = {
    __metadata__: { format: "pt" },
    ...Object.fromEntries([f32("weight", [2, 3], 0)]),
    ids: { dtype: "I64", shape: [2], data_offsets: [24, 40] },
    scalar: { dtype: "F16", shape: [], data_offsets: [40, 42] },
    empty: { dtype: "F32", shape: [0, 4], data_offsets: [42, 42] },
  };
  const list = await inspect(encode(header, Buffer.alloc(42)));
  const byName = Object.fromEntries(list.map((e) => [e.name, e]));
  t.same(Object.keys(byName).sort(), ["empty", "ids", "scalar", "weight"]);
  t.same(byName.weight, { name: "weight", dtype: "Float", shape: [2, 3] });
  t.same(byName.ids, { name: "ids", dtype: "Long", shape: [2] });
  t.same(byName.scalar, { name: "scalar", dtype: "Half", shape: [] });
  t.same(byName.empty, { name: "empty", dtype: "Float", shape: [0, 4] });
});

t.test("a real file, by path and as a buffer, lists what its header holds", async (t) => {
  const { entries } = readEntries(vaeFile);
  const expected = entries.map((e) => ({ name: e.name, shape: e.shape })).sort((a, b) => a.name.localeCompare(b.name));
  for (const source of [vaeFile, fs.readFileSync(vaeFile)]) {
    const list = await inspect(source);
    t.same(list.map((e) => ({ name: e.name, shape: e.shape })).sort((a, b) => a.name.localeCompare(b.name)), expected);
    t.ok(list.every((e) => e.dtype === "Float"), "every tensor is float32");
  }
  t.comment(`${entries.length} tensors`);
});

t.test("malformed files are rejected with the problem named", async (t) => {
  const lengthOnly = (n, total) => {
    const b = Buffer.alloc(total);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  const cases = [
    ["shorter than 8 bytes", Buffer.from([1, 2, 3]), /3 bytes, shorter than the 8-byte header length/],
    ["empty file", Buffer.alloc(0), /0 bytes, shorter than/],
    ["header length past the end", lengthOnly(1000, 20), /header length 1000 runs past the end of the file \(20 bytes\)/],
    ["header length near 2^64", lengthOnly(2n ** 64n - 1n, 20), /runs past the end/],
    ["header not JSON", encode("{\"a\": "), /header is not valid JSON/],
    ["header JSON not an object", encode("[1, 2]"), /header is not a JSON object/],
    ["__metadata__ not an object", encode({ __metadata__: 3 }), /__metadata__ is not an object/],
    ["entry not an object", encode({ w: [1] }), [/tensor "w"/, /entry is not an object/]],
    ["entry missing dtype", encode({ w: { shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(4)), [/tensor "w"/, /missing dtype/]],
    ["entry missing shape", encode({ w: { dtype: "F32", data_offsets: [0, 4] } }, Buffer.alloc(4)), [/tensor "w"/, /missing shape/]],
    ["entry missing data_offsets", encode({ w: { dtype: "F32", shape: [1] } }, Buffer.alloc(4)), [/tensor "w"/, /data_offsets must be \[begin, end\]/]],
    ["data_offsets of three numbers", encode({ w: { dtype: "F32", shape: [1], data_offsets: [0, 4, 8] } }, Buffer.alloc(8)), [/tensor "w"/, /data_offsets must be/]],
    ["unknown dtype", encode({ w: { dtype: "F8_E4M3", shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1)), [/tensor "w"/, /unknown dtype "F8_E4M3"/, /accepted: F32/]],
    ["negative shape", encode({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, Buffer.alloc(4)), [/tensor "w"/, /shape entries must be non-negative integers/]],
    ["fractional shape", encode({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, Buffer.alloc(4)), [/tensor "w"/, /non-negative integers/]],
    ["negative offset", encode({ w: { dtype: "F32", shape: [1], data_offsets: [-4, 0] } }, Buffer.alloc(4)), [/tensor "w"/, /data_offsets must be non-negative integers/]],
    ["offsets out of range", encode(Object.fromEntries([f32("w", [4], 0)]), Buffer.alloc(8)), [/tensor "w"/, /data_offsets \[0, 16\] out of range of the 8-byte data section/]],
    ["end before begin", encode({ w: { dtype: "F32", shape: [1], data_offsets: [8, 4] } }, Buffer.alloc(8)), [/tensor "w"/, /data_offsets \[8, 4\]: end is before begin/]],
    ["byte count not matching shape x dtype", encode({ w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 12] } }, Buffer.alloc(12)), [/tensor "w"/, /holds 12 bytes, its dtype and shape need 16/]],
    // 2^61 float64 elements are 2^64 bytes: a byte count that wraps to 0 must not pass as empty.
    ["shape whose byte count overflows", encode('{"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}}'), [/tensor "w"/, /shape is too large/]],
    ["huge size after a zero", encode('{"w":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}}'), [/tensor "w"/, /shape is too large/]],
    ["two tensors overlapping", encode(Object.fromEntries([f32("a", [2], 0), f32("b", [2], 4)]), Buffer.alloc(12)), /tensors "a" and "b" overlap/],
    ["a tensor inside another", encode(Object.fromEntries([f32("long", [8], 0), f32("short", [1], 4)]), Buffer.alloc(32)), /tensors "long" and "short" overlap/],
    // The overlap is with an earlier, longer tensor, not with the empty one just before it.
    ["overlap hidden behind an empty tensor", encode({ ...Object.fromEntries([f32("long", [8], 0), f32("late", [1], 12)]), gap: { dtype: "F32", shape: [0], data_offsets: [8, 8] } }, Buffer.alloc(32)), /tensors "long" and "late" overlap/],
  ];
  for (const [name, bytes, patterns] of cases) {
    await t.test(name, (t) => rejects(t, inspect(bytes), [/<buffer>: /, ...[].concat(patterns)]));
  }
});

t.test("a truncated real file is rejected, as a buffer and by path", async (t) => {
  const whole = fs.readFileSync(vaeFile);
  const half = whole.subarray(0, Math.floor(whole.length / 2));
  const file = path.join(tmp, "half.safetensors");
  fs.writeFileSync(file, half);
  const outOfRange = [/tensor "[^"]+": data_offsets \[\d+, \d+\] out of range of the \d+-byte data section/];
  await rejects(t, inspect(half), outOfRange);
  await rejects(t, inspect(file), [new RegExp(file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), ...outOfRange]);
  // Cut inside the header: its length now runs past the end.
  await rejects(t, inspect(whole.subarray(0, 100)), /header length \d+ runs past the end of the file \(100 bytes\)/);
});

t.test("a missing file or a folder", async (t) => {
  await rejects(t, inspect(path.join(tmp, "none.safetensors")), /cannot open .*none\.safetensors/, "ERR_OVAM_NOT_FOUND");
  await rejects(t, inspect(tmp), /is a folder; accepted: a regular file/, "ERR_OVAM_INVALID_ARGUMENT");
});

t.test("fuzz: mutated headers never crash, each resolves or rejects with a code", async (t) => {
  const seed = 20240611;
  const random = prng(seed);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const header = {
    __metadata__: { format: "pt" },
    ...Object.fromEntries([f32("a", [2, 3], 0), f32("b", [4], 24), f32("c", [1, 1, 2], 40)]),
  };
  const data = Buffer.alloc(48);
  const values = [-1, 0, 1, 3, 24, 48, 49, 2 ** 31, 2 ** 53, 1e300, 0.5, "F32", "I64", "X", "", null, true, [], [0], [0, 48], [48, 0], {}, [[1]], "\u0000"];
  const mutators = [
    // a value anywhere in an entry replaced by another of any type
    () => {
      const h = structuredClone(header);
      const entry = h[pick(["a", "b", "c", "__metadata__"])];
      const key = pick(["dtype", "shape", "data_offsets", "format"]);
      if (Array.isArray(entry[key]) && random() < 0.5) entry[key][Math.floor(random() * entry[key].length)] = pick(values);
      else entry[key] = pick(values);
      return encode(h, data);
    },
    // random bytes of the JSON text changed
    () => {
      const bytes = encode(header, data);
      const end = 8 + Number(bytes.readBigUInt64LE(0));
      for (let i = 0, n = 1 + Math.floor(random() * 4); i < n; i++) bytes[8 + Math.floor(random() * (end - 8))] = Math.floor(random() * 256);
      return bytes;
    },
    // a number in the JSON text replaced by a big or odd one
    () => {
      const text = JSON.stringify(header);
      const numbers = [...text.matchAll(/\d+/g)];
      const m = pick(numbers);
      const replacement = pick(["18446744073709551615", "18446744073709551616", "9223372036854775808", "-0", "1e3", "00", "4294967296", "99999999999999999999999"]);
      return encode(text.slice(0, m.index) + replacement + text.slice(m.index + m[0].length), data);
    },
    // the length field changed
    () => {
      const bytes = encode(header, data);
      bytes.writeBigUInt64LE(BigInt(Math.floor(random() * (bytes.length + 16))) | (random() < 0.2 ? 1n << 63n : 0n));
      return bytes;
    },
    // the file cut anywhere
    () => {
      const bytes = encode(header, data);
      return bytes.subarray(0, Math.floor(random() * bytes.length));
    },
    // deeply nested JSON
    () => {
      const depth = 1 + Math.floor(random() * 100000);
      return encode("[".repeat(depth) + (random() < 0.5 ? "]".repeat(depth) : ""));
    },
  ];
  const outcomes = { resolved: 0, rejected: 0 };
  const rounds = 400;
  for (let i = 0; i < rounds; i++) {
    const bytes = pick(mutators)();
    const e = await rejection(inspect(bytes));
    if (e) {
      outcomes.rejected++;
      if (e.code !== "ERR_OVAM_SAFETENSORS") t.fail(`round ${i} (seed ${seed}): code ${e.code}: ${e.message}`);
    } else {
      outcomes.resolved++;
    }
  }
  t.equal(outcomes.resolved + outcomes.rejected, rounds, `all ${rounds} rounds answered`);
  t.ok(outcomes.rejected > rounds / 2, "most mutations are caught");
  t.comment(`seed ${seed}: ${outcomes.resolved} resolved, ${outcomes.rejected} rejected`);
});
