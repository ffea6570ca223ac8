/**
 * The in-browser benchmark page: pick a model fixture, a method and bits; perplexity, KL and
 * top-1 agreement are computed in the tab by {@linkcode runWebCell} (WebGPU, else WASM). The
 * fixtures are listed in `fixtures.json` next to the page (written by `web/build.ts`).
 * `globalThis.lowbitRun(choice)` runs a cell without the form (used by the browser test).
 *
 * @module
 */

/// <reference lib="dom" />

import { runWebCell, type WebCellResult } from "./cell.ts";

/** A model fixture of the page. */
interface Fixture {
  readonly id: string;
  readonly checkpoint: string;
  readonly tokenizer: string;
}

/** `fixtures.json`. */
interface Manifest {
  readonly models: readonly Fixture[];
  readonly text: { readonly id: string; readonly path: string };
}

/** A choice on the page. */
export interface Choice {
  readonly model: string;
  readonly method: string;
  readonly bits: number;
  readonly group: "channel" | number;
  readonly limit: number;
  readonly backend?: string;
}

async function fetchBytes(path: string): Promise<Uint8Array> {
  const res = await fetch(path);
  if (!res.ok) throw new Error(`Cannot fetch ${path}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

const manifest: Promise<Manifest> = fetch("fixtures.json").then((r) => {
  if (!r.ok) throw new Error(`Cannot fetch fixtures.json: HTTP ${r.status}`);
  return r.json();
});

/** Runs one cell of the page's fixtures. */
async function lowbitRun(choice: Choice): Promise<WebCellResult> {
  const m = await manifest;
  const fixture = m.models.find((f) => f.id === choice.model);
  if (!fixture) throw new TypeError(`Unknown model fixture "${choice.model}"`);
  const [checkpoint, tokenizer, text] = await Promise.all([
    fetchBytes(fixture.checkpoint),
    fetchBytes(fixture.tokenizer),
    fetchBytes(m.text.path).then((b) => new TextDecoder().decode(b)),
  ]);
  return await runWebCell({
    checkpoint,
    tokenizer,
    text,
    textId: m.text.id,
    method: choice.method,
    bits: choice.bits,
    group: choice.group,
    limit: choice.limit,
    ...(choice.backend ? { backend: choice.backend } : {}),
  });
}

(globalThis as unknown as { lowbitRun: typeof lowbitRun }).lowbitRun = lowbitRun;

function el<T extends HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

async function setup(): Promise<void> {
  const m = await manifest;
  const model = el<HTMLSelectElement>("model");
  for (const f of m.models) model.add(new Option(f.id, f.id));
  el<HTMLFormElement>("cell").addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = el<HTMLOutputElement>("result");
    out.textContent = "running…";
    const group = el<HTMLSelectElement>("group").value;
    try {
      const r = await lowbitRun({
        model: model.value,
        method: el<HTMLSelectElement>("method").value,
        bits: Number(el<HTMLSelectElement>("bits").value),
        group: group === "channel" ? "channel" : Number(group),
        limit: Number(el<HTMLInputElement>("limit").value),
      });
      const where = r.gpu
        ? `${r.backend} on ${r.gpu.description || r.gpu.vendor}${
          r.gpu.fallback ? " (fallback adapter: not GPU speed)" : ""
        }`
        : r.backend;
      out.textContent = `perplexity ${r.ppl.toFixed(4)} · KL ${r.kl.toFixed(5)} nats/token · ` +
        `top-1 ${(100 * r.top1).toFixed(2)}% · ${r.windows} windows · ${where} · ` +
        `${(r.ms / 1000).toFixed(1)} s`;
    } catch (err) {
      out.textContent = `error: ${err instanceof Error ? err.message : String(err)}`;
    }
  });
}

setup().catch((e) => {
  el<HTMLOutputElement>("result").textContent = `error: ${e instanceof Error ? e.message : e}`;
});
