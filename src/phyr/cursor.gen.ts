// The one walker: writes src/phyr/cursors.generated.ts, one RangeCursor class per storage layout,
// all from the single class template below. Run `npm run gen:cursors` after editing this file;
// cursor.test.ts fails while the checked-in file differs from what this generates.
//
// Why generated source text and not a class factory at run time: each layout gets its own class
// with its storage reads written in place, so a consumer that walks one layout sees one class and
// V8 inlines the whole walk (measured: as fast as hand-written classes; a runtime factory was
// 9-12% slower). Why one template: the walk protocol (skip, budget, segment limits, merge, virt
// boundary, stops and resume, pos/seek, fill) exists once, so every layout walks alike.
//
// A layout is described by how to read entry k of its storage: its start address (as an exact
// number when the source fits 2^53, and as a bigint), its raw length, its flags, and, for the
// scatterlist, how to step from one slot to the next through chain links. A raw entry is the
// stored entry before the page layouts' header trim: those walks begin `base` (the first offset)
// bytes into raw entry 0, and their last raw entry is stored already trimmed to where the walk
// ends. A layout without chain links also gives fill()'s bulk copy of whole entries.
//
// Segment semantics (what every layout hands out), from the current position: a segment never
// spans two entries unless `merge` is set and they are physically adjacent with equal flags; it is
// then cut to maxSegmentLen, to the next (segBoundaryMask + 1)-aligned line and to the remaining
// budget. Segments are greedy, so a segment is a function of the position (a clone, or a cursor
// seeked to a saved RangePos, sees the same one). Empty scatterlist entries are passed over.
//
// Speed notes (bench/phyr.bench.ts): the walk with nothing to apply (no limits, merge or budget)
// takes a fast path in next() and fill() that touches only the position, with no call on it (V8
// then keeps the cursor in registers); `consumed` is summed lazily from an anchor position when
// read. In fill(), a column the storage already holds is copied by TypedArray set, a column of
// equal lengths is copied from a kept run of them (constantRun), and the others are computed by one
// loop per column, unrolled (unrolled() below).


interface Field {
  readonly name: string;
  readonly type: string;
  /** Value from the constructor's view `v`. */
  readonly from: string;
}

interface Layout {
  readonly cls: string;
  readonly view: string;
  readonly doc: readonly string[];
  readonly fields: readonly Field[];
  /** Slots with chain links in between, entries that may be empty (the scatterlist). */
  readonly chained: boolean;
  /** Entry count and fits (all addresses below 2^53) from the view. Default v.n, v.fits. */
  readonly nFrom?: string;
  readonly fitsFrom?: string;
  /** Chained layouts: the slot of logical entry idx (for seek). */
  readonly slotOf?: string;
  /** The walk starts `base` bytes into raw entry 0 (page layouts). */
  readonly base: boolean;
  /** Start address of the entry in slot k as a number (exact when fits). `t` prefixes fields. */
  start(k: string, t: string): string;
  /** Exact start address (bigint). */
  startBig(k: string): string;
  /** Raw length in bytes. */
  len(k: string, t: string): string;
  /** Raw length of an entry that is not the last one (page layouts: no last-entry trim). Default len. */
  midLen?(k: string, t: string): string;
  flags(k: string, t: string): string;
  /**
   * fill()'s bulk copy (layouts without chain links): writes rows k .. k + c - 1 of the address
   * column A and the length column L from entries i .. i + c - 1 (the template writes flags).
   */
  readonly bulk?: string;
  /** Extra private members. */
  readonly extra?: string;
}

const FLAGS = (k: string, t: string): string => `(${t}hasF ? ${t}f[${k}] : ${t}fc)`;
const FLAG_FIELDS: readonly Field[] = [
  { name: 'f', type: 'Uint32Array', from: 'v.f ?? EMPTY_U32' },
  { name: 'hasF', type: 'boolean', from: 'v.f !== null' },
  { name: 'fc', type: 'number', from: 'v.fc' },
];

/** Rows per iteration of fill()'s unrolled column loops. */
const UNROLL = 16;

/**
 * A loop over rows j = 0 .. count - 1 of fill()'s columns: the statements `row(j)` write row j. Each view
 * [name, array, first] is `array` seen from index `first`, so that the rows index every column
 * from 0. The loop is unrolled UNROLL rows at a time, then goes one by one. Why (measured on
 * Node 20; the fill() rows of bench/phyr.bench.ts show it): V8 re-checks a typed array on every
 * access in a loop, and ran a one-row loop that stores to a typed array about twice as slow as one
 * that only reads; unrolling spreads the per-iteration checks over the rows, and views indexed
 * from 0 spare the offset arithmetic per row, which brings the store loop to the bare read loop's
 * speed.
 */
function unrolled(
  count: string, views: readonly (readonly [string, string, string])[], row: (j: string) => readonly string[],
): string {
  const body: string[] = [];
  for (let x = 0; x < UNROLL; x++) body.push(...row(x === 0 ? 'j' : `j + ${x}`));
  return lines(
    '{',
    ...views.map(([name, arr, first]) => `  const ${name} = ${arr}.subarray(${first}, ${first} + ${count});`),
    '  let j = 0;',
    `  for (; j + ${UNROLL} <= ${count}; j += ${UNROLL}) {`,
    indent(body.join('\n'), 4),
    '  }',
    `  for (; j < ${count}; j++) {`,
    indent(row('j').join('\n'), 4),
    '  }',
    '}',
  );
}

const LAYOUTS: readonly Layout[] = [
  {
    cls: 'AddrLenCursor', view: 'AddrLenView', chained: false, base: false,
    doc: ['The walk over an address + length list: PhyrList and DmaList (phyr-list.ts).'],
    fields: [
      { name: 'a', type: 'Float64Array', from: 'v.a' },
      { name: 'l', type: 'Float64Array', from: 'v.l' },
      ...FLAG_FIELDS,
      { name: 'big', type: 'ReadonlyMap<number, bigint> | null', from: 'v.big' },
    ],
    start: (k, t) => `${t}a[${k}]`,
    startBig: (k) => `this.bigStart(${k})`,
    len: (k, t) => `${t}l[${k}]`,
    flags: FLAGS,
    // The stored columns are the segments.
    bulk: [
      'A.set(this.a.subarray(i, i + c), k);',
      'L.set(this.l.subarray(i, i + c), k);',
    ].join('\n'),
    extra: `
  /** Exact start of entry k: the sparse map holds those that end above 2^53. */
  private bigStart(k: number): bigint {
    const b = this.big === null ? undefined : this.big.get(k);
    return b ?? BigInt(this.a[k]);
  }
`,
  },
  {
    cls: 'BvecCursor', view: 'BvecView', chained: false, base: false,
    doc: ['The walk over a bio_vec array (bvec.ts): bvec_phys = pfn * page size + bv_offset, bv_len bytes.'],
    fields: [
      { name: 'p', type: 'Float64Array', from: 'v.pfn' },
      { name: 'l', type: 'Uint32Array', from: 'v.len' },
      { name: 'o', type: 'Uint32Array', from: 'v.off' },
      { name: 'ps', type: 'number', from: 'v.ps' },
      ...FLAG_FIELDS,
    ],
    start: (k, t) => `${t}p[${k}] * ${t}ps + ${t}o[${k}]`,
    startBig: (k) => `BigInt(this.p[${k}]) * BigInt(this.ps) + BigInt(this.o[${k}])`,
    len: (k, t) => `${t}l[${k}]`,
    flags: FLAGS,
    bulk: [
      'const p = this.p;',
      'const o = this.o;',
      'const ps = this.ps;',
      unrolled('c', [['dA', 'A', 'k'], ['sP', 'p', 'i'], ['sO', 'o', 'i']], (j) => [`dA[${j}] = sP[${j}] * ps + sO[${j}];`]),
      'L.set(this.l.subarray(i, i + c), k);',
    ].join('\n'),
  },
  {
    cls: 'PageListCursor', view: 'PagesView', chained: false, base: true,
    doc: ['The walk over a page list (page-list.ts): aligned chunks of 2^order pages, the first and last trimmed.'],
    fields: [
      { name: 'p', type: 'Float64Array', from: 'v.pfn' },
      { name: 'ord', type: 'Uint8Array', from: 'v.ord' },
      { name: 'ps', type: 'number', from: 'v.ps' },
      { name: 'lastI', type: 'number', from: 'v.n - 1' },
      { name: 'lastRaw', type: 'number', from: 'v.lastLen + (v.n === 1 ? v.firstOff : 0)' },
      { name: 'base', type: 'number', from: 'v.firstOff' },
      ...FLAG_FIELDS,
    ],
    start: (k, t) => `${t}p[${k}] * ${t}ps`,
    startBig: (k) => `BigInt(this.p[${k}] * this.ps)`,
    len: (k, t) => `(${k} === ${t}lastI ? ${t}lastRaw : ${t}ps * POW2[${t}ord[${k}]])`,
    midLen: (k, t) => `${t}ps * POW2[${t}ord[${k}]]`,
    flags: FLAGS,
    bulk: [
      'const p = this.p;',
      'const ord = this.ord;',
      'const ps = this.ps;',
      unrolled('c', [['dA', 'A', 'k'], ['sP', 'p', 'i']], (j) => [`dA[${j}] = sP[${j}] * ps;`]),
      unrolled('c', [['dL', 'L', 'k'], ['sO', 'ord', 'i']], (j) => [`dL[${j}] = ps * POW2[sO[${j}]];`]),
      'if (i + c - 1 === this.lastI) L[k + c - 1] = this.lastRaw;',
    ].join('\n'),
  },
  {
    cls: 'PageArrayCursor', view: 'PageArrayView', chained: false, base: true,
    doc: ['The walk over a struct page * array (page-array.ts): one base page per entry, the first and last trimmed.'],
    fields: [
      { name: 'a', type: 'Float64Array', from: 'v.addr' },
      { name: 'ps', type: 'number', from: 'v.ps' },
      { name: 'lastI', type: 'number', from: 'v.n - 1' },
      { name: 'lastRaw', type: 'number', from: 'v.lastLen + (v.n === 1 ? v.firstOff : 0)' },
      { name: 'base', type: 'number', from: 'v.firstOff' },
      ...FLAG_FIELDS,
    ],
    start: (k, t) => `${t}a[${k}]`,
    startBig: (k) => `BigInt(this.a[${k}])`,
    len: (k, t) => `(${k} === ${t}lastI ? ${t}lastRaw : ${t}ps)`,
    midLen: (k, t) => `${t}ps`,
    flags: FLAGS,
    bulk: [
      'const ps = this.ps;',
      'A.set(this.a.subarray(i, i + c), k);',
      '{',
      '  const run = constantRun(ps, c);',
      '  if (run !== null) L.set(run, k);',
      '  else L.fill(ps, k, k + c);',
      '}',
      'if (i + c - 1 === this.lastI) L[k + c - 1] = this.lastRaw;',
    ].join('\n'),
  },
  {
    cls: 'SgCursor', view: 'SgTableView', chained: true, base: false,
    doc: [
      'The walk over the CPU side of an SgTable (scatterlist.ts, for_each_sgtable_sg): sg_phys =',
      'pfn * page size + offset, `length` bytes; sg_next() through chain links; empty entries passed over.',
    ],
    nFrom: 'v._origNents',
    fitsFrom: 'v.addrFitsNumber',
    slotOf: 'this.v.slotOfUnchecked(idx)',
    fields: [
      { name: 'link', type: 'Uint8Array', from: 'v._link' },
      { name: 'pf', type: 'Float64Array', from: 'v._pfn' },
      { name: 'o', type: 'Uint32Array', from: 'v._offset' },
      { name: 'l', type: 'Uint32Array', from: 'v._length' },
      { name: 'ps', type: 'number', from: 'v.pageSize' },
      { name: 'f', type: 'Uint32Array', from: 'v._flags ?? EMPTY_U32' },
      { name: 'hasF', type: 'boolean', from: 'v._flags !== null' },
    ],
    // An entry with a length but no page (pfn -1) cannot be walked.
    start: (k, t) => `(${t}pf[${k}] < 0 ? noPageError(${k}, ${t}l[${k}]) : ${t}pf[${k}]) * ${t}ps + ${t}o[${k}]`,
    startBig: (k) => `BigInt(this.page(${k})) * BigInt(this.ps) + BigInt(this.o[${k}])`,
    len: (k, t) => `${t}l[${k}]`,
    flags: (k, t) => `(${t}hasF ? ${t}f[${k}] : 0)`,
    extra: `
  /** The pfn of the entry in slot k, which has a length. @throws RangeError if it has no page. */
  private page(k: number): number {
    const p = this.pf[k];
    return p < 0 ? noPageError(k, this.l[k]) : p;
  }
`,
  },
  {
    cls: 'SgDmaCursor', view: 'SgTableView', chained: true, base: false,
    doc: [
      'The walk over the DMA side of an SgTable (for_each_sgtable_dma_sg): sg_dma_address and',
      'sg_dma_len of the first nents entries; sg_next() through chain links; empty entries passed over.',
    ],
    nFrom: 'v._nents',
    fitsFrom: 'v.dmaFitsNumber',
    slotOf: 'this.v.slotOfUnchecked(idx)',
    fields: [
      { name: 'link', type: 'Uint8Array', from: 'v._link' },
      // A table that was never mapped has no DMA columns: its DMA entries are all empty.
      { name: 'da', type: 'BigUint64Array', from: 'v._dmaAddr ?? new BigUint64Array(v._pfn.length)' },
      { name: 'l', type: 'Uint32Array', from: 'v._dmaLen ?? new Uint32Array(v._pfn.length)' },
      { name: 'f', type: 'Uint32Array', from: 'v._flags ?? EMPTY_U32' },
      { name: 'hasF', type: 'boolean', from: 'v._flags !== null' },
    ],
    start: (k, t) => `Number(${t}da[${k}])`,
    startBig: (k) => `this.da[${k}]`,
    len: (k, t) => `${t}l[${k}]`,
    flags: (k, t) => `(${t}hasF ? ${t}f[${k}] : 0)`,
  },
];

/** Indents every non-empty line of a block by n spaces. */
function indent(s: string, n: number): string {
  const pad = ' '.repeat(n);
  return s.split('\n').map((l) => (l.trim() === '' ? '' : pad + l)).join('\n');
}

/** Local declarations for the storage fields that a block of code (written with t = '') reads. */
function locals(L: Layout, body: string): string {
  return L.fields.map((f) => f.name).filter((n) => new RegExp(`(?<![.\\w])${n}(?![\\w])`).test(body))
    .map((n) => `const ${n} = this.${n};`).join('\n');
}

/** Lines joined, with empty entries (conditional lines left out) dropped. */
function lines(...ls: (string | false)[]): string {
  return ls.filter((l): l is string => l !== false).join('\n');
}

function cursorClass(L: Layout): string {
  const C = L.cls;
  const ch = L.chained;
  /** The storage slot of the current entry. */
  const S = ch ? 'this.s' : 'this.i';
  const K = ch ? 's' : 'i';
  const st = (k: string): string => L.start(k, 'this.');
  const sb = (k: string): string => L.startBig(k);
  const ln = (k: string): string => L.len(k, 'this.');
  const fl = (k: string): string => L.flags(k, 'this.');
  // Steps locals (i, s[, pv]) from one non-empty entry to the next non-empty one, or to i = n
  // (the cold paths: move, mergeRun; the hot paths step inline and leave empty entries to skipEmpty).
  const step = (withPv: boolean): string => (ch
    ? lines(
      withPv && 'pv = s;',
      'for (;;) {',
      '  i++;',
      '  if (i >= n) break;',
      '  s = (this.link[s + 1] & 1) !== 0 ? s + 2 : s + 1;',
      `  if (${L.len('s', 'this.')} !== 0) break;`,
      '}',
    )
    : 'i++;');

  // name, type, initial value, doc line
  const state: [string, string, string, string?][] = [
    ['maxSeg', 'number', 'Infinity', '// Limits (parseCursorOptions).'],
    ['bnd', 'number', '0'], ['vm', 'number', '0'], ['merge', 'boolean', 'false'],
    ['plain', 'boolean', 'true', '/** No limits, merge or budget: every segment is the rest of one entry (the fast paths). */'],
    ['hot', 'number', L.base ? 'this.n - 1' : 'this.n', `/** next() takes its fast path onto entries below this: ${L.base ? 'the last entry' : 'the end'} when plain, else 0. */`],
    ['i', 'number', '0', `// Position: entry i${ch ? ' in slot s (pv: slot of the previous non-empty entry, -1 for none; kept by the limited walk only, which alone checks seams)' : ''}, off bytes into its raw entry.`],
    ...(ch ? [['s', 'number', '0'], ['pv', 'number', '-1']] as [string, string, string][] : []),
    ['off', 'number', '0'], ['budgetEnd', 'number', 'Infinity'], ['resumeAt', 'number', '0'],
    ['cons', 'number', '0', `// consumed = cons at the anchor position (entry ai${ch ? ' in slot as' : ''}, ao bytes in) + the bytes walked since.`],
    ['ai', 'number', '0'], ...(ch ? [['as', 'number', '0']] as [string, string, string][] : []), ['ao', 'number', '0'],
  ];
  const seg: [string, string, string][] = [
    ['done', 'boolean', 'false'], ['stopReason', 'StopReason | null', 'null'], ['addrNum', 'number', '0'],
    ['len', 'number', '0'],
  ];
  const decls = lines(
    `  private declare readonly v: ${L.view};`,
    '  private declare readonly n: number;',
    '  private declare readonly fits: boolean;',
    ...L.fields.map((f) => `  private declare readonly ${f.name}: ${f.type};`),
    ...state.flatMap(([n, t, , doc]) => [doc !== undefined && `  ${doc}`, `  private declare ${n}: ${t};`]),
    '  // The current segment.',
    ...seg.map(([n, t]) => `  declare ${n}: ${t};`),
  );
  const inits = lines(
    '    this.v = v;',
    `    this.n = ${L.nFrom ?? 'v.n'};`,
    `    this.fits = ${L.base ? 'true' : L.fitsFrom ?? 'v.fits'};`,
    ...L.fields.map((f) => `    this.${f.name} = ${f.from};`),
    ...[...state, ...seg].map(([n, , init]) => `    this.${n} = ${init};`),
  );
  const copied = [...state, ...seg].map(([n]) => n);
  const hotEnd = L.base ? 'this.lastI' : 'this.n';
  const midLen = (k: string, t: string): string => (L.midLen ?? L.len)(k, t);
  const anchorHere = lines('this.ai = this.i;', ch && 'this.as = this.s;', 'this.ao = this.off;');

  // fill() without limits: rows k .. from whole entries, after the current segment in row 0.
  const fillPlain = ch
    ? (() => {
      const body = lines(
        'let i = this.i + 1;',
        'let s = this.s;',
        'while (k < m && i < n) {',
        '  s = (link[s + 1] & 1) !== 0 ? s + 2 : s + 1;',
        `  if (${L.len('s', '')} === 0) {`,
        '    i++; // an empty entry: passed over',
        '    continue;',
        '  }',
        '  // A run of non-empty entries in consecutive slots (no chain link in between).',
        '  const want = Math.min(m - k, n - i);',
        '  let r = 1;',
        `  while (r < want && (link[s + r] & 1) === 0 && ${L.len('s + r', '')} !== 0) r++;`,
        indent(unrolled('r', [], (j) => [`A[k + ${j}] = ${L.start(`s + ${j}`, '')};`]), 2),
        '  L.set(l.subarray(s, s + r), k);',
        '  if (F !== null) {',
        '    if (hasF) F.set(f.subarray(s, s + r), k);',
        '    else F.fill(0, k, k + r);',
        '  }',
        '  k += r;',
        '  i += r;',
        '  s += r - 1;',
        '}',
        'this.i = i;',
        'this.off = 0;',
        'if (i < n) {',
        '  s = (link[s + 1] & 1) !== 0 ? s + 2 : s + 1;',
        '  this.s = s;',
        `  if (${L.len('s', '')} === 0) this.skipEmpty();`,
        '}',
      );
      return lines('const n = this.n;', locals(L, body), body);
    })()
    : lines(
      'const n = this.n;',
      'let i = this.i + 1;',
      'const c = Math.min(m - 1, n - i);',
      'if (c > 0) {',
      indent(lines(
        '// Rows k .. k + c - 1 from entries i .. i + c - 1.',
        L.bulk ?? '',
        'if (F !== null) {',
        '  if (this.hasF) F.set(this.f.subarray(i, i + c), k);',
        '  else F.fill(this.fc, k, k + c);',
        '}',
        'i += c;',
        'k += c;',
      ), 2),
      '}',
      'this.i = i;',
      'this.off = 0;',
    );
  if (!ch && L.bulk === undefined) throw new Error(`${C}: a layout without chain links needs a bulk copy`);

  return `
/**
 * ${L.doc.join('\n * ')}
 * Generated from the one walk template (cursor.gen.ts); see RangeCursor in types.ts.
 */
export class ${C} implements RangeCursor {
${decls}

  /** @internal Use the layout's cursor(). */
  constructor(v: ${L.view}, opts: CursorOptions | undefined, from?: ${C}) {
${inits}
    if (from !== undefined) {
      this.copyFrom(from);
      return;
    }
    if (opts !== undefined) {
      this.configure(opts);
      return;
    }
${lines(
    ch && `    if (this.n > 0 && ${ln('0')} === 0) {`,
    ch && '      this.skipEmpty();',
    ch && '      this.ai = this.i;',
    ch && '      this.as = this.s;',
    ch && '    }',
    '    if (this.i < this.n) {',
    `      const k = ${S};`,
    L.base && '      this.off = this.base;',
    L.base && '      this.ao = this.base;',
    `      this.addrNum = ${st('k')}${L.base ? ' + this.base' : ''};`,
    `      this.len = ${ln('k')}${L.base ? ' - this.base' : ''};`,
    '    } else {',
    "      this.stop('end');",
    '    }',
  )}
  }

  private configure(opts: CursorOptions): void {
    const o = parseCursorOptions(opts);
    this.maxSeg = o.maxSeg;
    this.bnd = o.bnd;
    this.vm = o.vm;
    this.merge = o.merge;
    this.budgetEnd = o.budget;
    this.plain = o.plain;
    this.hot = o.plain ? ${hotEnd} : 0;
${lines(
    ch && `    if (this.n > 0 && ${ln('0')} === 0) this.skipEmpty();`,
    L.base && '    if (this.i < this.n) this.off = this.base;',
  )}
    if (o.skip > 0) {
      const over = this.move(o.skip);
      if (over > 0) throw skipError(o.skip, o.skip - over);
    }
${indent(anchorHere, 4)}
    this.settle();
  }

  private copyFrom(c: ${C}): void {
${copied.map((f) => `    this.${f} = c.${f};`).join('\n')}
  }

  /** Bytes walked before the current segment (summed from the anchor when the fast paths moved on). */
  get consumed(): number {
    if (this.ai !== this.i || this.ao !== this.off) this.catchUp();
    return this.cons;
  }

  /** Moves the anchor to the current position, adding the bytes walked since. */
  private catchUp(): void {
${lines(
    '    const to = this.i;',
    '    let c = this.cons - this.ao;',
    ch ? '    let s = this.as;\n    const n = this.n;' : '',
    ch
      ? lines(
        '    for (let i = this.ai; i < to; i++) {',
        `      c += ${L.len('s', 'this.')};`,
        '      if (i + 1 < n) s = (this.link[s + 1] & 1) !== 0 ? s + 2 : s + 1;',
        '    }',
      )
      : `    for (let i = this.ai; i < to; i++) c += ${ln('i')};`,
    '    this.cons = c + this.off;',
    indent(anchorHere, 4),
  ).replace(/\n\n/g, '\n')}
  }

  /** Sets consumed at the current position to c (the limited walk keeps the anchor current). */
  private anchorAt(c: number): void {
    this.cons = c;
${indent(anchorHere, 4)}
  }
${ch ? `
  /** From an empty entry at (i, s): on to the next non-empty entry, or to i = n. */
  private skipEmpty(): void {
    const n = this.n;
    let i = this.i;
    let s = this.s;
    while (i < n && ${L.len('s', 'this.')} === 0) {
      i++;
      if (i < n) s = nextSlot(this.link, s);
    }
    this.i = i;
    this.s = s;
  }
` : ''}
  /** Memory-type flags of the current segment (0 when done). */
  get flags(): number {
    return this.done ? 0 : ${fl(S)};
  }

  /** Start of the current segment, exact over 64 bits (0n when done). */
  get addr(): bigint {
    if (this.done) return 0n;
    return this.fits ? BigInt(this.addrNum) : ${sb(S)} + BigInt(this.off);
  }

  next(): boolean {
    // The fast path (a walk without limits): the current segment is the rest of entry i, the next
    // one is the whole next entry.
    const i = this.i + 1;
    if (i < this.hot) {
      this.i = i;
      this.off = 0;
${ch
    ? lines(
      '      const s0 = this.s;',
      '      const s = (this.link[s0 + 1] & 1) !== 0 ? s0 + 2 : s0 + 1;',
      '      this.s = s;',
      `      if (${L.len('s', 'this.')} === 0) return this.nextAfterEmpty();`,
      `      this.addrNum = ${L.start('s', 'this.')};`,
      `      this.len = ${midLen('s', 'this.')};`,
    )
    : lines(
      `      this.addrNum = ${L.start('i', 'this.')};`,
      `      this.len = ${midLen('i', 'this.')};`,
    )}
      return true;
    }
    if (!this.plain) return this.nextLimited();
    // Without limits, ${L.base ? 'onto the last entry or ' : ''}to the end. Written out here, with no call, so that
    // the whole walk inlines and V8 can keep the cursor in registers.
    const n = this.n;
    if (i > n) return false;
    this.i = i;
    this.off = 0;
${L.base ? `    if (i < n) {
      this.addrNum = ${L.start('i', 'this.')};
      this.len = ${L.len('i', 'this.')};
      return true;
    }
` : ''}    this.done = true;
    this.stopReason = 'end';
    this.addrNum = 0;
    this.len = 0;
    return false;
  }
${ch ? `
  /** next() without limits onto an empty entry: on to the next non-empty one. */
  private nextAfterEmpty(): boolean {
    this.skipEmpty();
    if (this.i >= this.n) {
      this.stop('end');
      return false;
    }
    const s = this.s;
    this.addrNum = ${L.start('s', 'this.')};
    this.len = ${L.len('s', 'this.')};
    return true;
  }
` : ''}
  private nextLimited(): boolean {
    if (this.done) return false;
    const len = this.len;
    const c = this.consumed + len;
    this.move(len);
    this.anchorAt(c);
    this.settle();
    return !this.done;
  }

  advance(bytes: number): void {
    if (this.done || typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0 || bytes > this.len) {
      advanceError(bytes, this.len, this.stopReason);
    }
    const c = this.consumed + bytes;
    this.move(bytes);
    this.anchorAt(c);
    this.settle();
  }

  clone(): ${C} {
    return new ${C}(this.v, undefined, this);
  }

  resume(budget?: number): void {
    const b = budget === undefined ? Infinity : checkBudget(budget);
    if (this.stopReason === 'end') return;
    this.done = false;
    this.stopReason = null;
    const c = this.consumed;
    this.resumeAt = c;
    this.budgetEnd = c + b;
    this.setPlain();
    this.settle();
  }

  pos(): RangePos {
    const i = this.i;
    return {
      idx: i, off: ${L.base ? 'i === 0 ? this.off - this.base : ' : ''}this.off,
      consumed: this.consumed, budgetEnd: this.budgetEnd, resumeAt: this.resumeAt,
    };
  }

  seek(pos: RangePos): void {
    const p = checkPos(pos, this.n);
    const idx = p.idx;
    if (idx < this.n) {
      const k = ${ch ? L.slotOf : 'idx'};
${lines(
    L.base && '      const head = idx === 0 ? this.base : 0;',
    `      const walked = ${ln('k')}${L.base ? ' - head' : ''};`,
    `      if (p.off >= walked${ch ? ' && !(walked === 0 && p.off === 0)' : ''}) throw posOffError(p.off, idx, walked);`,
    '      this.i = idx;',
    ch
      ? lines(
        '      this.s = k;',
        '      this.pv = this.prevNonEmpty(idx);',
        '      this.off = p.off;',
        '      if (walked === 0) this.skipEmpty();',
      )
      : `      this.off = p.off${L.base ? ' + head' : ''};`,
  )}
    } else {
      this.i = this.n;
      this.off = 0;
    }
    this.anchorAt(p.consumed);
    this.budgetEnd = p.budgetEnd;
    this.resumeAt = p.resumeAt;
    this.done = false;
    this.stopReason = null;
    this.setPlain();
    this.settle();
  }
${ch ? `
  /** Slot of the last non-empty entry before entry idx, or -1 (seek only). */
  private prevNonEmpty(idx: number): number {
    for (let j = idx - 1; j >= 0; j--) {
      const k = ${L.slotOf?.replace('idx', 'j')};
      if (${ln('k')} !== 0) return k;
    }
    return -1;
  }
` : ''}
  fill(cols: SegmentColumns, max: number): number {
    const m = checkFill(cols, max);
    if (this.done || m === 0) return 0;
    const A = cols.addr;
    if (!this.plain || A === null || (cols.frame ?? null) !== null) return this.fillEach(cols, m);
    // No limits: the current segment, then one whole entry per row.
    const L = cols.len;
    const F = cols.flags ?? null;
    A[0] = this.addrNum;
    L[0] = this.len;
    if (F !== null) F[0] = ${fl(S)};
    let k = 1;
${indent(fillPlain, 4)}
    if (this.i < n) {
      const s = ${S};
      this.addrNum = ${st('s')};
      this.len = ${ln('s')};
    } else {
      this.stop('end');
    }
    return k;
  }

  /** fill() one segment at a time, through next(): limits, or the (frame, offset) columns. */
  private fillEach(cols: SegmentColumns, m: number): number {
    const A = cols.addr;
    const L = cols.len;
    const F = cols.flags ?? null;
    const FR = cols.frame ?? null;
    const FO = cols.frameOff ?? null;
    let k = 0;
    while (k < m && !this.done) {
      if (A !== null) A[k] = this.addrNum;
      L[k] = this.len;
      if (F !== null) F[k] = ${fl(S)};
      if (FR !== null && FO !== null) {
        if (this.fits) {
          const a = this.addrNum;
          const fr = Math.floor(a / SEG_FRAME_SIZE);
          FR[k] = fr;
          FO[k] = a - fr * SEG_FRAME_SIZE;
        } else {
          const b = this.addr;
          FR[k] = Number(b / FRAME_BIG);
          FO[k] = Number(b % FRAME_BIG);
        }
      }
      k++;
      this.next();
    }
    return k;
  }

  /** After a budget change: plain when nothing is left to apply. */
  private setPlain(): void {
    const plain = this.maxSeg === Infinity && this.bnd === 0 && this.vm === 0 && !this.merge && this.budgetEnd === Infinity;
    this.plain = plain;
    this.hot = plain ? ${hotEnd} : 0;
  }

  private stop(reason: StopReason): void {
    this.done = true;
    this.stopReason = reason;
    this.addrNum = 0;
    this.len = 0;
  }

  /**
   * Moves the position \`bytes\` forward without settling (onto the next non-empty entry when it
   * lands on an entry's end); returns the bytes left over past the end of the source.
   */
  private move(bytes: number): number {
    const n = this.n;
    let rem = bytes;
    let i = this.i;
${lines(ch && '    let s = this.s;', ch && '    let pv = this.pv;')}
    let off = this.off;
    while (i < n) {
      const rest = ${L.len(K, 'this.')} - off;
      if (rem < rest) {
        off += rem;
        rem = 0;
        break;
      }
      rem -= rest;
      off = 0;
${indent(step(true), 6)}
      if (rem === 0) break;
    }
    this.i = i;
${lines(ch && '    this.s = s;', ch && '    this.pv = pv;')}
    this.off = off;
    return rem;
  }

  /**
   * Decides whether the walk stops at the current position; otherwise cuts the current segment:
   * the rest of the entry (with merge: of the run of physically adjacent entries with equal
   * flags), then at most maxSeg bytes, up to the next segment boundary line, within the budget.
   */
  private settle(): void {
    if (this.i >= this.n) return this.stop('end');
    const consumed = this.consumed;
    if (consumed >= this.budgetEnd) return this.stop('budget');
    const k = ${S};
    const off = this.off;
    if (this.vm !== 0 && off === 0 && consumed > this.resumeAt && ${ch ? 'this.pv >= 0' : 'k > 0'} && this.gapBefore(k)) {
      return this.stop('virt-boundary');
    }
    let run = ${ln('k')} - off;
    let cap = this.maxSeg;
    const left = this.budgetEnd - consumed;
    if (left < cap) cap = left;
    const bnd = this.bnd;
    if (bnd !== 0) {
      const toLine = bnd - this.modAt(k, off, bnd);
      if (toLine < cap) cap = toLine;
    }
    if (this.merge && run < cap) run = this.mergeRun(run, cap);
    this.addrNum = ${st('k')} + off;
    this.len = run < cap ? run : cap;
  }

  /** (start of the entry in slot k + off) mod m, exact. */
  private modAt(k: number, off: number, m: number): number {
    if (this.fits) return (${st('k')} + off) % m;
    return Number((${sb('k')} + BigInt(off)) % BigInt(m));
  }

  /**
   * The seam before the entry in slot k is a virt-boundary gap: the previous non-empty entry's end
   * or this entry's start is not aligned to the mask (block/blk.h: __bvec_gap_to_prev). A seam
   * that merge joins is no seam: with merge, physically adjacent entries with equal flags are one
   * run before any gap is judged (block/bio.c: bvec_try_merge_page; block/blk-merge.c:
   * bio_will_gap asks biovec_phys_mergeable first).
   */
  private gapBefore(k: number): boolean {
    const p = ${ch ? 'this.pv' : 'k - 1'};
    const joinable = this.merge && ${fl('p')} === ${fl('k')};
    if (this.fits) {
      const end = ${st('p')} + ${ln('p')};
      const start = ${st('k')};
      if (joinable && end === start) return false;
      const g = this.vm + 1;
      return end % g !== 0 || start % g !== 0;
    }
    const end = ${sb('p')} + BigInt(${ln('p')});
    const start = ${sb('k')};
    if (joinable && end === start) return false;
    return ((end | start) & BigInt(this.vm)) !== 0n;
  }

  /** With merge: extends a run of \`run0\` bytes over the following entries that continue it physically with equal flags, until cap. */
  private mergeRun(run0: number, cap: number): number {
    const n = this.n;
    let run = run0;
    let i = this.i;
${lines(ch && '    let s = this.s;')}
    const f = ${fl(K)};
    let endNum = 0;
    let endBig = 0n;
    if (this.fits) endNum = ${L.start(K, 'this.')} + ${L.len(K, 'this.')};
    else endBig = ${L.startBig(K)} + BigInt(${L.len(K, 'this.')});
    while (run < cap) {
${indent(step(false), 6)}
      if (i >= n || ${L.flags(K, 'this.')} !== f) break;
      const len = ${L.len(K, 'this.')};
      if (this.fits) {
        if (${L.start(K, 'this.')} !== endNum) break;
        endNum += len;
      } else {
        if (${L.startBig(K)} !== endBig) break;
        endBig += BigInt(len);
      }
      run += len;
    }
    return run;
  }
${L.extra ?? ''}}
`.replace(/\n\n\n+/g, '\n\n').replace(/\n\n(?= {4})/g, '\n'); // no blank line inside a method (left by a line a layout leaves out)
}

const HEADER = `// generated by src/phyr/cursor.gen.ts (npm run gen:cursors), do not edit.
//
// One RangeCursor class per storage layout, all from the one walk template in cursor.gen.ts: the
// walk protocol of types.ts (segment limits, merge, virt boundary, budget, stops and resume,
// pos/seek, fill) written once and specialised per layout as source text, so that V8 sees one
// small class per layout.
//
// Model deviation: with merge, a run of physically adjacent entries is merged whole and then cut
// at the max segment size and at segment boundary lines (same bytes, fewer segments), where
// block/blk-mq-dma.c: blk_map_iter_next stops merging before a bvec that would overflow
// max_segment_size or cross a line (block/blk.h: biovec_phys_mergeable).
// Model deviation: a cut for max segment size or a segment boundary inside an entry is never a
// virt-boundary stop, where block/blk-merge.c: bvec_split_segs splits the bio at such a cut when it
// is not aligned to the virt boundary (only stacked limits have both a virt boundary and a max
// segment size).

import {
  advanceError, checkBudget, checkFill, checkPos, constantRun, nextSlot, noPageError, parseCursorOptions, posOffError, skipError,
  type AddrLenView, type BvecView, type PageArrayView, type PagesView, type SgTableView,
} from './cursor.ts';
import { SEG_FRAME_SIZE, type CursorOptions, type RangeCursor, type RangePos, type SegmentColumns, type StopReason } from './types.ts';

const EMPTY_U32 = new Uint32Array(0);
const FRAME_BIG = BigInt(SEG_FRAME_SIZE);
/** 2^k as exact doubles, k = 0..63 (module-local, so that V8 reads it as a constant in hot loops). */
const POW2 = new Float64Array(64);
for (let k = 0; k < 64; k++) POW2[k] = 2 ** k;
`;

/** The text of cursors.generated.ts. */
export function generateCursors(): string {
  const classes = LAYOUTS.map(cursorClass).join('');
  const union = LAYOUTS.map((l) => l.cls).join(' | ');
  return `${HEADER}${classes}
/** Any generated cursor (each walks typed-array columns of one layout). */
export type ColumnCursor = ${union};
`;
}
