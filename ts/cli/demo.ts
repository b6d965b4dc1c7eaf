// ovam demo: the whole tour in one folder: generate, attribute words (one not in the prompt),
// optimise a token against a mask, attribute with it, and say what each file shows.
import { commonOptions, COMMON_HELP, loadOptions, modelHelp, modelOptions, noExtra, number, text, type Command } from "./args";
import { fileList, OutputDir } from "./output";
import { attributeSubjects, BUNDLED_WARNING, generateAndSave, isBundled, loadModel, maskPNG, optimizeWithProgress, type Subject } from "./workflow";

const PROMPT = "a photograph of a car in a city street";
// "tree" is not in the prompt: open-vocabulary attribution maps any word.
const WORDS = ["car", "street", "tree"];
const DEMO_EPOCHS = 30;

export const demoCommand: Command = {
  name: "demo",
  summary: "generate, attribute, optimise a token and attribute it, into one folder",
  options: {
    ...commonOptions,
    ...modelOptions,
    out: { type: "string", short: "o" },
    steps: { type: "string" },
    seed: { type: "string" },
    epochs: { type: "string" },
  },
  help: `Usage: ovam demo [--model DIR] [--out DIR] [options]

Runs the whole pipeline into one folder (default ./ovam-demo):
  1. generates "${PROMPT}"
  2. attributes the words ${WORDS.join(", ")} ("tree" is not in the prompt)
  3. optimises a token for "car" against a rectangular mask of the lower middle of the image
  4. attributes the image with that token
and lists every file it wrote with what it shows. Without --model it uses the bundled tiny
random-weight test model: it runs in seconds, but its pictures and maps are noise.

Options:
  -o, --out DIR           output folder (default ./ovam-demo)
  --steps N               denoising steps (default 50)
  --seed N                noise seed (default 0)
  --epochs N              token optimisation epochs (default ${DEMO_EPOCHS})

${modelHelp()}

${COMMON_HELP}

Examples:
  ovam demo
  ovam demo --out /tmp/ovam-demo --steps 3
  ovam demo --model ~/models/stable-diffusion-v1-5 --device cuda --out demo-sd15/`,

  async run(ctx, values, positionals) {
    noExtra(positionals, "the demo takes options only");
    const steps = number(values, "steps", "integer");
    const seed = number(values, "seed", "integer") ?? 0;
    const epochs = number(values, "epochs", "integer") ?? DEMO_EPOCHS;
    const out = await new OutputDir(text(values, "out") ?? "ovam-demo", ctx.reporter).prepare();
    const sd = await loadModel(ctx, text(values, "model"), loadOptions(values));
    const { image } = await generateAndSave(ctx, sd, { prompt: PROMPT, steps, seed }, out, "generation");

    const mask = rectangleMask(image.width, image.height);
    await out.write("car-target.png", await maskPNG(mask), `the mask the "car" token was optimised towards (white = object)`);
    const token = await optimizeWithProgress(ctx, [image], { text: "car", context: PROMPT, target: mask, epochs });
    await out.save("car.token.safetensors", (file) => token.save(file), `the optimised "car" token (loss ${token.losses[0]?.toPrecision(4)} → best ${Math.min(...token.losses).toPrecision(4)}; reuse with ovam attribute --token)`);

    const subjects: Subject[] = [...WORDS.map((word) => ({ label: word, text: word })), { label: "car (token)", token }];
    const { sheet } = await attributeSubjects(ctx, image, subjects, out, {});
    const bundled = isBundled(sd);
    ctx.reporter.result(
      { command: "demo", model: sd.folder, randomWeights: bundled, prompt: PROMPT, words: WORDS, seed: image.settings.seed, sheet, files: out.files },
      [
        `ovam demo: "${PROMPT}" on ${sd.folder}`,
        ...(bundled ? [BUNDLED_WARNING] : []),
        fileList(out.files),
        `Start with ${sheet.path}: the image, then the maps of ${WORDS.join(", ")} and of the optimised token.`,
      ].join("\n"),
    );
  },
};

// A rectangle over the lower middle of the image, where a street scene's car would stand.
function rectangleMask(width: number, height: number) {
  const data = new Uint8Array(width * height);
  for (let y = Math.floor(height / 2); y < Math.floor((height * 7) / 8); y++)
    for (let x = Math.floor(width / 4); x < Math.floor((width * 3) / 4); x++) data[y * width + x] = 1;
  return { data, width, height };
}
