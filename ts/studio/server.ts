// `ovam studio`'s HTTP server (fastify): the page's static files and a JSON API, each route a thin
// call into Studio. Every request needs the session's random token (the page's URL carries it
// once, then a cookie), so other users of the machine cannot reach it; it binds 127.0.0.1 unless
// told otherwise. Failures answer { error: { code, message } } with a 4xx status for bad
// requests; nothing a request sends can stop the server.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

import type { FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";

import { AmbiguousWordError, BusyError, InvalidArgumentError, InvalidOptionError, NotFoundError, OvamError, WordNotFoundError } from "../errors";
import { MAX_SIZE, parse, type Map2D } from "../options";
import { Studio, type StudioOpenOptions } from "./studio";

export interface StudioServerOptions extends StudioOpenOptions {
  /** Interface to listen on; default "127.0.0.1". */
  host?: string;
  /** Port; default 0 (a free one). */
  port?: number;
  /** The access token; default 24 random bytes, hex. */
  token?: string;
}

export interface StudioServer {
  /** The page's address with the token, e.g. http://127.0.0.1:41234/?token=… */
  url: string;
  token: string;
  port: number;
  studio: Studio;
  close(): Promise<void>;
}

const COOKIE = "ovam_studio_token";
const PAGE_DIR = path.join(__dirname, "page");
const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };
// Base64 of the largest ground truth (MAX_SIZE² label bytes) inside its JSON request.
const TRUTH_BODY_LIMIT = Math.ceil((MAX_SIZE * MAX_SIZE * 4) / 3) + 4096;

const listQuery = z.strictObject({
  class: z.string().max(200).optional(),
  minForeground: z.coerce.number().min(0).max(1).optional(),
  maxForeground: z.coerce.number().min(0).max(1).optional(),
  annotated: z.enum(["true", "false"]).transform((v) => v === "true").optional(),
  offset: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  token: z.string().optional(),
});
const attributeBody = z.strictObject({
  text: z.string().min(1).max(1000),
  mode: z.enum(["softmax", "linear"]).default("softmax"),
  /** The per-block view: one stored block's name, or a resolution (a grid's longer side). */
  block: z.union([z.string().min(1).max(200), z.number().int().min(1).max(MAX_SIZE)]).optional(),
});
const truthBody = z.strictObject({
  width: z.number().int().min(1).max(MAX_SIZE),
  height: z.number().int().min(1).max(MAX_SIZE),
  /** Base64 of width × height label bytes, row-major. */
  data: z.string(),
});
const optimizeBody = z.strictObject({
  class: z.union([z.string().min(1).max(200), z.number().int().min(0).max(254)]),
  epochs: z.number().int().min(1).max(1000).optional(),
  lr: z.number().positive().finite().optional(),
});

/** Opens `target` (a dataset folder, a generation file or a folder of them) and serves the studio for it. */
export async function startStudio(target: string, opts: StudioServerOptions = {}): Promise<StudioServer> {
  const { host = "127.0.0.1", port = 0, token = randomBytes(24).toString("hex"), ...open } = opts;
  const studio = await Studio.open(target, open);
  const page = await readPage();
  // Loaded here, so that `require("ovam")` and the other commands do not pay for the server.
  const { default: Fastify } = await import("fastify");
  const app = Fastify({ logger: false });

  app.addHook("onRequest", async (request, reply) => {
    const given = tokenOf(request);
    if (given === undefined) return refuse(reply, 401, "ERR_OVAM_UNAUTHORIZED", "this studio needs its access token: open the URL ovam studio printed (…/?token=…), or send the header x-ovam-token");
    if (!same(given, token)) return refuse(reply, 403, "ERR_OVAM_FORBIDDEN", "wrong access token; accepted: the token ovam studio printed");
    if (queryToken(request) !== undefined) reply.header("set-cookie", `${COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`);
  });
  app.setErrorHandler((error, _request, reply) => {
    const [status, code] = statusOf(error);
    reply.code(status).send({ error: { code, message: error instanceof Error ? error.message : String(error) } });
  });
  app.setNotFoundHandler((request, reply) => refuse(reply, 404, "ERR_OVAM_NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}; see docs/studio-api.md`));

  // The page: / (after the token in its URL became a cookie, a redirect drops it from the address bar).
  app.get("/", async (request, reply) => {
    if (queryToken(request) !== undefined) return reply.redirect("/");
    return reply.type(TYPES[".html"]).send(page.get("index.html"));
  });
  app.get<{ Params: { file: string } }>("/page/:file", async (request, reply) => {
    const bytes = page.get(request.params.file);
    if (!bytes) throw new NotFoundError(`no page file "${request.params.file}"`);
    return reply.type(TYPES[path.extname(request.params.file)]).send(bytes);
  });

  app.get("/api/info", async () => {
    const { kind, root, classes, background, items } = studio.source;
    return { kind, root, classes, background, items: items.length, model: studio.pipeline.folder, perBlock: items.some((i) => i.files.generation !== undefined) };
  });
  app.get("/api/items", async (request) => {
    const { token: _, ...filter } = parse("GET /api/items", listQuery, request.query, "query");
    return studio.list(filter);
  });
  app.get<{ Params: { id: string } }>("/api/items/:id", async (request) => studio.item(request.params.id));
  app.get<{ Params: { id: string } }>("/api/items/:id/image.png", async (request, reply) => reply.type("image/png").send(await studio.imagePNG(request.params.id)));
  app.get<{ Params: { id: string } }>("/api/items/:id/maps", async (request) => ({
    maps: (await studio.classMaps(request.params.id)).map(({ class: c, by, map }) => ({ class: c.name, id: c.id, by, ...plane(map) })),
  }));
  app.get<{ Params: { id: string } }>("/api/items/:id/labels", async (request) => plane(await studio.labels(request.params.id)));
  app.get<{ Params: { id: string } }>("/api/items/:id/blocks", async (request) => ({ blocks: await studio.blocks(request.params.id) }));
  app.post<{ Params: { id: string } }>("/api/items/:id/attribute", async (request) => {
    const { text, mode, block } = parse(`POST /api/items/:id/attribute`, attributeBody, request.body, "body");
    const { tokens, words, ms } = await studio.wordMaps(request.params.id, text, mode, block);
    return { text, mode, block: block ?? null, tokens, ms, words: words.map(({ word, map }) => ({ word, ...plane(map) })) };
  });
  app.get<{ Params: { id: string } }>("/api/items/:id/gt", async (request) => {
    const truth = await studio.truth(request.params.id);
    if (!truth) throw new NotFoundError(`item "${request.params.id}" has no ground truth yet; save it with PUT /api/items/${request.params.id}/gt`);
    return plane(truth);
  });
  app.put<{ Params: { id: string } }>("/api/items/:id/gt", { bodyLimit: TRUTH_BODY_LIMIT }, async (request) => {
    const { width, height, data } = parse("PUT /api/items/:id/gt", truthBody, request.body, "body");
    const bytes = Buffer.from(data, "base64");
    const file = await studio.saveTruth(request.params.id, { width, height, data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) });
    return { file };
  });
  app.post("/api/jobs/optimize", async (request, reply) => reply.code(202).send(await studio.optimize(parse("POST /api/jobs/optimize", optimizeBody, request.body, "body"))));
  app.post("/api/jobs/eval", async (request, reply) => {
    parse("POST /api/jobs/eval", z.strictObject({}), request.body ?? {}, "body");
    return reply.code(202).send(await studio.evaluate());
  });
  app.get<{ Params: { id: string } }>("/api/jobs/:id", async (request) => studio.jobs.get(request.params.id));

  let address: string;
  try {
    address = await app.listen({ host, port });
  } catch (error) {
    studio.close();
    throw error;
  }
  const bound = new URL(address);
  return {
    url: `${bound.origin}/?token=${token}`,
    token,
    port: Number(bound.port),
    studio,
    async close() {
      await app.close();
      studio.close();
    },
  };
}

// The page's files, read once: index.html, studio.css and the compiled modules.
async function readPage(): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of await readdir(PAGE_DIR)) if (TYPES[path.extname(name)]) files.set(name, await readFile(path.join(PAGE_DIR, name)));
  return files;
}

// A plane for JSON: float maps as base64 little-endian float32, labels as base64 bytes.
function plane(map: Map2D<Float32Array | Uint8Array>): { width: number; height: number; dtype: "float32" | "uint8"; data: string } {
  const { data } = map;
  return { width: map.width, height: map.height, dtype: data instanceof Float32Array ? "float32" : "uint8", data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64") };
}

function queryToken(request: FastifyRequest): string | undefined {
  const value = (request.query as Record<string, unknown> | undefined)?.token;
  return typeof value === "string" ? value : undefined;
}

function tokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers["x-ovam-token"];
  if (typeof header === "string") return header;
  const query = queryToken(request);
  if (query !== undefined) return query;
  const cookie = request.headers.cookie
    ?.split(";")
    .map((part) => part.trim().split("="))
    .find(([name]) => name === COOKIE);
  return cookie?.[1];
}

function same(given: string, token: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function refuse(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send({ error: { code, message } });
}

// HTTP status and code of an error: the request's mistakes are 4xx, the rest 500.
function statusOf(error: unknown): [number, string] {
  if (error instanceof BusyError) return [409, error.code];
  if (error instanceof NotFoundError) return [404, error.code];
  if (error instanceof InvalidOptionError || error instanceof InvalidArgumentError || error instanceof WordNotFoundError || error instanceof AmbiguousWordError) return [400, error.code];
  if (error instanceof OvamError) return [500, error.code];
  // fastify's own: a body too large (413), malformed JSON or a wrong content type (400, 415).
  const { statusCode, code } = error as { statusCode?: unknown; code?: unknown };
  if (typeof statusCode === "number" && statusCode >= 400 && statusCode < 500) return [statusCode, typeof code === "string" ? code : "ERR_OVAM_BAD_REQUEST"];
  return [500, "ERR_OVAM_INTERNAL"];
}
