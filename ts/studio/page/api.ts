// The studio's HTTP JSON API as the page calls it (docs/studio-api.md). The access token rides in
// a cookie the server set when the page was opened.

export interface StudioClass {
  id: number;
  name: string;
  text: string;
  color: [number, number, number];
}

export interface Info {
  kind: "generations" | "dataset";
  root: string;
  classes: StudioClass[];
  background: number;
  items: number;
  model: string;
  perBlock: boolean;
}

/** What the page reads of an item (GET /api/items/{id} has more). */
export interface Item {
  id: string;
  prompt: string;
  width: number;
  height: number;
  classes: number[];
  /** Where its files are; a generation file is what word maps and the per-block view need. */
  files?: { generation?: string };
  annotated?: boolean;
}

/** An attention block of an item's capture. */
export interface Block {
  name: string;
  height: number;
  width: number;
}

/** A plane as the API sends it: base64 of float32 (little-endian) or uint8 values. */
export interface WirePlane {
  width: number;
  height: number;
  dtype: "float32" | "uint8";
  data: string;
}

export interface Plane<T extends Float32Array | Uint8Array> {
  width: number;
  height: number;
  data: T;
}

export interface Job {
  id: string;
  kind: string;
  state: "running" | "done" | "failed";
  progress: { losses: number[]; done: number; total: number };
  result?: Record<string, unknown>;
  error?: { code: string; message: string };
}

/** An answer other than 2xx, with the server's { error: { code, message } }. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(method: string, url: string, body?: unknown): Promise<T> {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new ApiError(response.status, answer?.error?.code ?? "?", answer?.error?.message ?? response.statusText);
  return answer as T;
}

function bytes(base64: string): Uint8Array {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

export function floats(wire: WirePlane): Plane<Float32Array> {
  return { width: wire.width, height: wire.height, data: new Float32Array(bytes(wire.data).buffer) };
}

export function labels(wire: WirePlane): Plane<Uint8Array> {
  return { width: wire.width, height: wire.height, data: bytes(wire.data) };
}

function base64(data: Uint8Array): string {
  let text = "";
  for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode(...data.subarray(i, i + 0x8000));
  return btoa(text);
}

// A label plane, or undefined where the item has none (404).
async function optional(url: string): Promise<Plane<Uint8Array> | undefined> {
  try {
    return labels(await call<WirePlane>("GET", url));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return undefined;
    throw error;
  }
}

const item = (id: string) => `/api/items/${encodeURIComponent(id)}`;

export const api = {
  info: () => call<Info>("GET", "/api/info"),
  items: (query: Record<string, string>) => call<{ total: number; items: Item[] }>("GET", `/api/items?${new URLSearchParams(query)}`),
  item: (id: string) => call<Item>("GET", item(id)),
  imageURL: (id: string) => `${item(id)}/image.png`,
  maps: (id: string) => call<{ maps: (WirePlane & { class: string; id: number; by: string })[] }>("GET", `${item(id)}/maps`),
  blocks: (id: string) => call<{ blocks: Block[] }>("GET", `${item(id)}/blocks`),
  attribute: (id: string, text: string, mode: string, block?: string | number) =>
    call<{ tokens: string[]; ms: number; words: (WirePlane & { word: string })[] }>("POST", `${item(id)}/attribute`, { text, mode, block }),
  truth: (id: string) => optional(`${item(id)}/gt`),
  labels: (id: string) => optional(`${item(id)}/labels`),
  saveTruth: (id: string, plane: Plane<Uint8Array>) => call<{ file: string }>("PUT", `${item(id)}/gt`, { width: plane.width, height: plane.height, data: base64(plane.data) }),
  optimize: (cls: string, epochs: number) => call<Job>("POST", "/api/jobs/optimize", { class: cls, epochs }),
  evaluate: () => call<Job>("POST", "/api/jobs/eval", {}),
  job: (id: string) => call<Job>("GET", `/api/jobs/${encodeURIComponent(id)}`),
};
