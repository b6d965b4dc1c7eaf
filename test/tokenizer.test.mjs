// The CLIP tokenizer against the reference's ids for every fixture text of both variants (sd1 pads
// with <|endoftext|>, sd2 with "!"): unpadded ids from encode(), padded/truncated ids from
// encode_padded().
import t from "tap";
import path from "node:path";
import { golden, modelDir, native } from "./helpers/golden.mjs";

const tokenize = (variant, text) => native().components.tokenize(path.join(modelDir(variant), "tokenizer"), text);

for (const variant of ["sd1", "sd2"]) {
  t.test(`${variant} tokenizer`, async (t) => {
    const cases = golden(variant).json.tokenizer;
    t.ok(cases.length > 0, "the fixture has tokenizer cases");
    for (const c of cases) {
      const out = await tokenize(variant, c.text);
      t.same(out.ids, c.ids_unpadded, `${JSON.stringify(c.text)}: ${c.ids_unpadded.length} ids, not truncated`);
      t.same(out.padded, c.ids, `${JSON.stringify(c.text)}: padded to 77`);
    }
  });
}
