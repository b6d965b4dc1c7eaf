// The fuzz test's child process: loads every mutated file of a case list and prints one JSON line
// per case ({ index, outcome, code }), so that the parent sees which case was last if a load ever
// kills the process. Usage: node fuzz-child.mjs CASES.json
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

import { root } from "./golden.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));

const sd = await ovam.load();
const image = await ovam.generate(sd, { prompt: "a car", steps: 1, seed: 0 });
for (const [index, c] of cases.entries()) {
  let outcome = "loaded";
  let code;
  try {
    if (c.kind === "generation") {
      const image = await ovam.loadGeneration(sd, c.file);
      // A file that loads must also be usable.
      await ovam.attribute(image, "car");
      image.dispose();
    } else if (c.kind === "token") {
      const token = await ovam.loadToken(c.file);
      if (token.embedding.shape[1] === sd.contextDim) await ovam.attribute(image, token);
    } else {
      (await ovam.load(c.file)).dispose();
    }
  } catch (error) {
    outcome = error instanceof ovam.OvamError ? "refused" : "untyped";
    code = error?.code ?? String(error?.message ?? error);
  }
  process.stdout.write(`${JSON.stringify({ index, outcome, code })}\n`);
}
sd.dispose();
