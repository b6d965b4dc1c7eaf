#!/usr/bin/env node
// The `ovam` command line: parses the command and its flags, runs it with Ctrl-C wired to an
// AbortSignal, and turns failures into one or two lines on stderr and an exit status
// (1 runtime error, 2 usage error, 130 interrupted).
import { OvamError } from "./errors";
import { Reporter } from "./progress";
import { hasFlag, parse, UsageError, type Command } from "./cli/args";
import { attributeCommand } from "./cli/attribute";
import { datasetCommand } from "./cli/dataset";
import { demoCommand } from "./cli/demo";
import { evalCommand } from "./cli/eval";
import { generateCommand } from "./cli/generate";
import { masksCommand } from "./cli/masks";
import { optimizeCommand } from "./cli/optimize";
import { segmentCommand } from "./cli/segment";
import { studioCommand } from "./cli/studio";
import { workerCommand } from "./cli/worker";

const commands: readonly Command[] = [generateCommand, attributeCommand, segmentCommand, optimizeCommand, datasetCommand, workerCommand, masksCommand, evalCommand, studioCommand, demoCommand];

// eslint-disable-next-line @typescript-eslint/no-require-imports
const version: string = require("../package.json").version;

const mainHelp = `ovam ${version}: Stable Diffusion with open-vocabulary attention maps (DAAM/OVAM)

Usage: ovam <command> [arguments] [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(11)} ${c.summary}`).join("\n")}

Run "ovam <command> --help" for a command's arguments and options.
Without --model, commands use the bundled tiny random-weight test model (its pictures are
noise); point --model at a diffusers folder such as stable-diffusion-v1-5 for real images.

Options:
  -h, --help      this help
  --version       the version

Exit status: 0 done, 1 runtime error, 2 usage error, 130 interrupted (Ctrl-C).

Examples:
  ovam demo --out ovam-demo
  ovam generate "a photograph of a car in a city street" --seed 1 --out out/
  ovam attribute out/generation.safetensors car street tree --out maps/
  ovam optimize out/generation.safetensors --mask maps/car.mask.png --text car --out car.safetensors
  ovam attribute out/generation.safetensors --token car.safetensors --out maps/
  ovam segment photo.jpg car tree --strength 0.3 --out seg/
  ovam dataset examples/urban-thesis.json --out urban/
  ovam eval maps/ --truth gt/ --out report/
  ovam studio out/ --classes car`;

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    const command = commands.find((c) => c.name === args[0]);
    if (name === undefined) {
      process.stderr.write(`${mainHelp}\n`);
      return 2;
    }
    process.stdout.write(`${command?.help ?? mainHelp}\n`);
    return 0;
  }
  if (name === "--version" || name === "-V") {
    process.stdout.write(`${version}\n`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  const verbose = hasFlag(args, "--verbose");
  const json = hasFlag(args, "--json");
  const reporter = new Reporter({ json, out: process.stdout, err: process.stderr });
  const controller = new AbortController();
  const interrupt = () => {
    if (controller.signal.aborted) process.exit(130); // a second Ctrl-C does not wait
    reporter.note("Interrupted: stopping (Ctrl-C again to quit at once)");
    controller.abort(new Error("interrupted (SIGINT)"));
  };
  process.on("SIGINT", interrupt);
  try {
    if (!command) throw new UsageError(`unknown command "${name}" (commands: ${commands.map((c) => c.name).join(", ")})`);
    if (hasFlag(args, "--help", "-h")) {
      process.stdout.write(`${command.help}\n`);
      return 0;
    }
    const { values, positionals } = parse(args, command.options);
    await command.run({ reporter, signal: controller.signal }, values, positionals);
    // A Ctrl-C that came too late to stop the work (while saving) still ends as interrupted.
    controller.signal.throwIfAborted();
    return 0;
  } catch (error) {
    return report(error, command?.name, { reporter, verbose, aborted: controller.signal.aborted });
  } finally {
    process.off("SIGINT", interrupt);
  }
}

// One or two lines for people (plus an "error" record with --json) and the exit status.
function report(error: unknown, command: string | undefined, o: { reporter: Reporter; verbose: boolean; aborted: boolean }): number {
  const prefix = command ? `ovam ${command}` : "ovam";
  const [status, code, message, hint] = o.aborted
    ? [130, "ERR_OVAM_ABORTED", "interrupted", undefined]
    : error instanceof UsageError
      ? [2, error.code, error.message, `Run "${prefix} --help" for usage.`]
      : error instanceof OvamError
        ? [1, error.code, error.message, undefined]
        : [1, codeOf(error), error instanceof Error ? error.message : String(error), o.verbose ? undefined : "(--verbose shows the stack trace)"];
  o.reporter.record("error", { code, message, status });
  process.stderr.write(`${prefix}: ${message}${code && !(error instanceof UsageError) ? ` [${code}]` : ""}\n${hint ? `${hint}\n` : ""}`);
  if (o.verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  return status;
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`ovam: ${String(error)}\n`);
    process.exitCode = 1;
  },
);
