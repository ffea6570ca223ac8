/**
 * Models known by id. Any other model is named by reference: `hf:owner/repo[@rev]` (a Hugging Face
 * Llama, Mixtral, Qwen2-MoE or OLMoE repository) or a local directory in Hugging Face layout.
 *
 * @module
 */

import { createRegistry, type Registry } from "../core/registry.ts";

/** A file of a registered model, with its published hash where one is known. */
export interface ModelFile {
  readonly path: string;
  readonly sha256?: string;
  readonly bytes?: number;
}

/** A registered model. */
export interface ModelEntry {
  readonly id: string;
  readonly title: string;
  readonly format: "llama2c" | "hf";
  /** Hub repository (`owner/repo`) and revision. */
  readonly repo: string;
  readonly revision: string;
  /** llama2.c: checkpoint and tokenizer files. HF: files are discovered from config.json. */
  readonly checkpoint?: ModelFile;
  readonly tokenizer?: ModelFile;
  readonly license: string;
}

/** Karpathy's tinyllamas stories260K: a 260K-parameter Llama trained on TinyStories. */
export const stories260K: ModelEntry = {
  id: "stories260K",
  title: "tinyllamas stories260K (llama2.c)",
  format: "llama2c",
  repo: "karpathy/tinyllamas",
  revision: "main",
  checkpoint: {
    path: "stories260K/stories260K.bin",
    sha256: "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
    bytes: 1056540,
  },
  tokenizer: {
    path: "stories260K/tok512.bin",
    sha256: "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
    bytes: 6227,
  },
  license: "MIT",
};

/** All registered models. */
export const MODELS: Registry<ModelEntry> = createRegistry("model", [stories260K]);
