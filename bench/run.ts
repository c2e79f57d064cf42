// npm run bench: runs every bench/*.bench.ts module (or those named on the command line) and
// prints each figure beside its target, with a verdict. Exits 1 if a target is missed.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { meets, type BenchModule, type BenchSection } from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

function fmt(v: number): string {
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(1)} k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(3);
}

let missed = 0;
for (const f of files) {
  const mod = (await import(pathToFileURL(join(here, f)).href)) as { default: BenchModule };
  const section: BenchSection = await mod.default();
  console.log(`\n== ${section.title} (${f})`);
  for (const row of section.rows) {
    const ok = meets(row);
    if (ok === false) missed++;
    const target = row.target ? `target ${row.target.op} ${fmt(row.target.value)} ${row.unit}` : '';
    const verdict = ok === undefined ? '' : ok ? 'PASS' : 'MISS';
    console.log(`  ${row.name.padEnd(58)} ${`${fmt(row.value)} ${row.unit}`.padStart(16)}  ${target.padEnd(28)} ${verdict}${row.note ? `  (${row.note})` : ''}`);
  }
}
console.log(`\n${missed === 0 ? 'all targets met' : `${missed} target(s) missed`}`);
process.exit(missed === 0 ? 0 : 1);
