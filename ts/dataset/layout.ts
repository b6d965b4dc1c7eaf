// Where a dataset's files go and how its labels are coloured: the default layout (images/,
// labels/, maps/, splits/) or the VOCdevkit one (JPEGImages/, SegmentationClass/,
// ImageSets/Segmentation/), and the VOC, Cityscapes and custom palettes.
import path from "node:path";

import type { DatasetSpec } from "./spec";

/** PASCAL VOC 2012 classes, ids 1–20 (0 is background). */
export const VOC_CLASSES = [
  "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
  "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
] as const;

/** Cityscapes train ids 0–18 (255 is ignore). */
export const CITYSCAPES_CLASSES = [
  "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain",
  "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
] as const;

// cityscapesScripts' labels.py colours, by train id.
const CITYSCAPES_COLORS: readonly (readonly [number, number, number])[] = [
  [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153], [250, 170, 30],
  [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142],
  [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
];

/** The VOC devkit's colormap: label i's bits spread over the high bits of r, g, b (index 255 is (224, 224, 192)). */
export function vocPalette(): Uint8Array {
  const palette = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    let [r, g, b, c] = [0, 0, 0, i];
    for (let j = 0; j < 8; j++, c >>= 3) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
    }
    palette.set([r, g, b], i * 3);
  }
  return palette;
}

/** 256 RGB entries: VOC's colormap, Cityscapes' colours by train id (255 black), or each class's colour (255 white). */
export function paletteOf(spec: Pick<DatasetSpec, "format" | "classes">): Uint8Array {
  if (spec.format === "voc") return vocPalette();
  const palette = new Uint8Array(256 * 3);
  if (spec.format === "cityscapes") CITYSCAPES_COLORS.forEach((color, id) => palette.set(color, id * 3));
  else {
    palette.set([255, 255, 255], 255 * 3);
    for (const c of spec.classes) palette.set(c.color, c.id * 3);
  }
  return palette;
}

/** The files of one item, relative to the dataset folder. */
export interface ItemFiles {
  image: string;
  label: string;
  maps: string;
  overlay: string;
  generation: string;
}

/** The folders a spec's items and split are written into (made by the runner before the first item). */
export function layoutFolders(spec: Pick<DatasetSpec, "layout" | "save">): string[] {
  const names = itemFiles(spec.layout, "x");
  const files = [names.image, names.label, splitFile(spec.layout)];
  if (spec.save.maps) files.push(names.maps);
  if (spec.save.overlays) files.push(names.overlay);
  if (spec.save.generation) files.push(names.generation);
  return files.map((file) => path.posix.dirname(file));
}

/**
 * An item's file names. The VOC layout keeps PNG images (lossless; set img_suffix='.png' in the
 * trainer's config) under JPEGImages/, as the devkit's folder names are what trainers look for.
 */
export function itemFiles(layout: DatasetSpec["layout"], id: string): ItemFiles {
  const [images, labels] = layout === "voc" ? ["JPEGImages", "SegmentationClass"] : ["images", "labels"];
  return {
    image: path.posix.join(images, `${id}.png`),
    label: path.posix.join(labels, `${id}.png`),
    maps: path.posix.join("maps", `${id}.safetensors`),
    overlay: path.posix.join("overlays", `${id}.png`),
    generation: path.posix.join("generations", `${id}.safetensors`),
  };
}

/** The training split file (one id per line) of a layout. */
export function splitFile(layout: DatasetSpec["layout"], split = "train"): string {
  return layout === "voc" ? path.posix.join("ImageSets", "Segmentation", `${split}.txt`) : path.posix.join("splits", `${split}.txt`);
}

export const DATASET_FILE = "dataset.json";
export const MANIFEST_FILE = "manifest.jsonl";
