// ovam.dataset: synthetic segmentation datasets from a spec (README, "Make a dataset").
export { runDataset as run, loadSpec, loadClassToken, loadClassTokens, modelFolder, parseShard, prepareDatasetFolder, removeStaleTemporaries, datasetRecord, writeSplit, type RunOptions, type RunProgress, type RunResult, type Shard } from "./run";
export { resolveSpec, planItem, planItems, itemCount, specRecord, tokenFile, datasetSpecSchema, type DatasetRefine, type DatasetSpec, type DatasetSpecInput, type DatasetClass, type Item } from "./spec";
export { runItem, makeItem, writeItem, parseMapsMetadata, type ItemContext, type MadeItem, type MapsMetadata } from "./item";
export { readManifest, appendManifestLine, type ManifestLine } from "./manifest";
export { relabelDataset as relabel, type RelabelOptions } from "./relabel";
export { filterDataset as filter, type FilterOptions, type FilterResult } from "./filter";
export { runQueued, datasetStatus as status, queueStatus, redactUrl, type QueueRunOptions, type QueueRunResult, type QueueProgress, type DatasetStatus, type ItemFailure } from "./queue";
export { startWorker, type WorkerOptions, type DatasetWorker } from "./worker";
export { paletteOf, vocPalette, itemFiles, splitFile, VOC_CLASSES, CITYSCAPES_CLASSES, DATASET_FILE, MANIFEST_FILE } from "./layout";
