// Benchmark: sg_alloc_table_from_pages_segment over 1 M pages (mostly non-contiguous and fully contiguous),
// in pages/s, and a walk of the resulting table through its cursor. Figures for reference, with modest
// targets measured on the development machine (2 shared cores).
import { Prng } from '../src/base/index.ts';
import { sgAllocTableFromPagesSegment, type SgTable } from '../src/phyr/index.ts';
import { timeMs, type BenchSection } from './harness.ts';

const N = 1 << 20;
const P = 4096;

function mostlyScattered(): Float64Array {
  // Runs of 1..3 contiguous pages, then a jump: ~2 pages per entry, like an aged anonymous mapping.
  const prng = new Prng(42);
  const pfns = new Float64Array(N);
  let p = 1 << 20;
  for (let i = 0; i < N; i++) {
    pfns[i] = p;
    p = prng.chance(0.5) ? p + 1 : p + 2 + prng.int(1000);
  }
  return pfns;
}

function contiguous(): Float64Array {
  const pfns = new Float64Array(N);
  for (let i = 0; i < N; i++) pfns[i] = (1 << 20) + i;
  return pfns;
}

function walk(sgt: SgTable): number {
  let bytes = 0;
  const c = sgt.cursor({ maxSegmentLen: 65536 });
  for (; !c.done; c.next()) bytes += c.len;
  return bytes;
}

export default function sgBench(): BenchSection {
  const scattered = mostlyScattered();
  const contig = contiguous();
  let sgtS: SgTable | null = null;
  let sgtC: SgTable | null = null;
  const tS = timeMs(() => {
    const r = sgAllocTableFromPagesSegment(scattered, 0, N * P, 0xffffffff);
    if (!r.ok) throw new Error(r.errno);
    sgtS = r.value;
  });
  const tC = timeMs(() => {
    const r = sgAllocTableFromPagesSegment(contig, 0, N * P, 0xffffffff);
    if (!r.ok) throw new Error(r.errno);
    sgtC = r.value;
  });
  const tC64 = timeMs(() => {
    const r = sgAllocTableFromPagesSegment(contig, 0, N * P, 65536);
    if (!r.ok) throw new Error(r.errno);
  });
  const s = sgtS as unknown as SgTable;
  const c = sgtC as unknown as SgTable;
  let walked = 0;
  const tW = timeMs(() => { walked = walk(s); });
  if (walked !== N * P) throw new Error(`walk covered ${walked} bytes, expected ${N * P}`);
  return {
    title: 'scatterlist: sg_alloc_table_from_pages_segment (1 M pages)',
    rows: [
      {
        name: 'from pages, mostly non-contiguous (Float64Array pfns)', value: N / (tS / 1000), unit: 'pages/s',
        target: { op: '>=', value: 10e6 }, note: `${s.origNents} entries, ${s.chunkCount} chunks, kernelBytes ${s.kernelBytes}`,
      },
      {
        name: 'from pages, fully contiguous, max_segment UINT_MAX', value: N / (tC / 1000), unit: 'pages/s',
        target: { op: '>=', value: 20e6 }, note: `${c.origNents} entries`,
      },
      { name: 'from pages, fully contiguous, max_segment 64 KiB', value: N / (tC64 / 1000), unit: 'pages/s', target: { op: '>=', value: 10e6 } },
      { name: 'cursor walk of the scattered table, max 64 KiB segments', value: N / (tW / 1000), unit: 'pages/s', note: 'for reference' },
    ],
  };
}
