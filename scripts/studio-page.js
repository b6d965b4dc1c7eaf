#!/usr/bin/env node
// Copies the studio page's static files (HTML, CSS) beside its compiled modules in
// dist/studio/page, the folder the studio server serves.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const from = path.resolve(__dirname, "..", "ts", "studio", "page");
const to = path.resolve(__dirname, "..", "dist", "studio", "page");
fs.mkdirSync(to, { recursive: true });
const copied = fs.readdirSync(from).filter((name) => /\.(html|css)$/.test(name));
for (const name of copied) fs.copyFileSync(path.join(from, name), path.join(to, name));
console.log(`studio-page: ${copied.join(", ")} → dist/studio/page`);
