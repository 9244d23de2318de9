// CI budget: the JavaScript a first visit loads — the entry chunk and every chunk it imports statically
// (what index.html asks for up front), gzipped — must stay within 200 KB. Lazy chunks (charts, mock
// data) are listed but not counted. Reads dist/.vite/manifest.json, written by `npm run build`.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const BUDGET = 200 * 1024;
const dist = resolve(import.meta.dirname, '../dist');
const manifest = JSON.parse(readFileSync(join(dist, '.vite/manifest.json'), 'utf8'));
const entry = Object.entries(manifest).find(([, c]) => c.isEntry);
if (!entry) throw new Error('no entry chunk in the manifest');

const first = new Set();
const visit = (key) => {
  const chunk = manifest[key];
  if (!chunk || first.has(chunk.file)) return;
  first.add(chunk.file);
  for (const dep of chunk.imports ?? []) visit(dep);
};
visit(entry[0]);

const gz = (file) => gzipSync(readFileSync(join(dist, file)), { level: 9 }).length;
let total = 0;
for (const file of first) {
  const size = gz(file);
  total += size;
  console.log(`first load  ${(size / 1024).toFixed(1).padStart(7)} KB gz  ${file}`);
}
for (const c of Object.values(manifest)) {
  if (c.file.endsWith('.js') && !first.has(c.file)) console.log(`lazy        ${(gz(c.file) / 1024).toFixed(1).padStart(7)} KB gz  ${c.file}`);
}
console.log(`first-load JavaScript: ${(total / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB)`);
if (total > BUDGET) {
  console.error('over budget');
  process.exit(1);
}
