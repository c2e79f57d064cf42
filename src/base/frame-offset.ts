// Model support (no kernel counterpart of its own): exact 64-bit address arithmetic without bigint.
// A position in a 64-bit address space (physical, DMA, bus, IOVA) is held as a pair of plain
// numbers: a frame number and an offset inside a frame of 2^shift bytes, so that
//
//     position = frame * 2^shift + off,   0 <= off < 2^shift.
//
// The frame is what the hot paths already index by (a pfn for shift 12 = PAGE_SHIFT, an IOVA pfn
// for iova_shift(), a swiotlb slot for IO_TLB_SHIFT = 11), and every operation below is exact over
// the whole 64-bit space with double arithmetic only: the frame stays a safe integer and the
// offset below 2^30, so no step rounds and no step needs a slow fmod (% on doubles); divisions by
// powers of two are multiplications by exact reciprocals.
//
// Conventions (every function):
//   - shift is an integer in [POS_SHIFT_MIN, POS_SHIFT_MAX] = [9, 30] (IOMMU granules from 512 B,
//     swiotlb slots of 2 KiB, pages of 4 KiB, up to 1 GiB frames);
//   - a valid position lies in [0, 2^64]: 2^64 itself is allowed so that the exclusive end of a
//     range reaching the top of the space can be held (the kernel keeps an inclusive `last`
//     there). For shift 9 and 10 the frame of a 64-bit position would exceed 2^53, so positions
//     are limited to [0, 2^(53 + shift)) there (2^62 and 2^63): the same limit the IOVA
//     allocator's number frame numbers already have. posFromBig throws beyond it;
//   - lg2 (an alignment or boundary, 2^lg2 bytes) is an integer in [0, 64];
//   - (frame, off) arguments must be a valid position as the posFrom* functions write it: hot
//     functions do not re-validate them. Lengths are safe integers >= 0 (bytes, `len`).
//   - no function allocates except posToBig (its result) and the error paths; results are numbers
//     or go into a caller-provided FramePos.
// bigint appears only in posFromBig / posToBig / Mask64 / maskLg2: the public boundaries.

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO_52 = 2 ** 52;
const TWO_53 = 2 ** 53;
const U64_MAX = (1n << 64n) - 1n;
const U64_END = 1n << 64n;

/** Smallest and largest frame shift (log2 of the frame size in bytes). */
export const POS_SHIFT_MIN = 9;
export const POS_SHIFT_MAX = 30;

/** POW2[k] = 2^k and INV_POW2[k] = 2^-k, exact doubles, k in [0, 64]. */
const POW2 = new Float64Array(65);
const INV_POW2 = new Float64Array(65);
for (let k = 0; k <= 64; k++) {
  POW2[k] = 2 ** k;
  INV_POW2[k] = 2 ** -k;
}

/** The largest valid position per shift, as (END_FRAME, END_OFF): 2^64, or 2^(53+shift) - 1 for shift < 11. */
const END_FRAME = new Float64Array(POS_SHIFT_MAX + 1);
const END_OFF = new Float64Array(POS_SHIFT_MAX + 1);
for (let s = POS_SHIFT_MIN; s <= POS_SHIFT_MAX; s++) {
  if (64 - s <= 53) {
    END_FRAME[s] = 2 ** (64 - s);
    END_OFF[s] = 0;
  } else {
    END_FRAME[s] = MAX_SAFE;
    END_OFF[s] = 2 ** s - 1;
  }
}

/** SHIFT_OK[s] = 1 for the valid shifts; any other number (fraction, negative, NaN) indexes nothing. */
const SHIFT_OK = new Uint8Array(POS_SHIFT_MAX + 1);
SHIFT_OK.fill(1, POS_SHIFT_MIN);

// One 64-bit scratch word seen as two u32 halves: bigint <-> (hi, lo) without bigint arithmetic.
const U64 = new BigUint64Array(1);
const U32 = new Uint32Array(U64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const LO = LITTLE_ENDIAN ? 0 : 1;
const HI = 1 - LO;

/** A position written by the pos* functions: frame * 2^shift + off (the shift is the caller's). */
export class FramePos {
  frame = 0;
  off = 0;
}

// ---- argument checks (cold paths, kept out of the hot functions' bodies)

function badShift(shift: unknown): never {
  throw new RangeError(`shift must be an integer in [${POS_SHIFT_MIN}, ${POS_SHIFT_MAX}], got ${String(shift)}`);
}

function badLg2(name: string, lg2: unknown, max: number): never {
  throw new RangeError(`${name} must be an integer in [0, ${max}], got ${String(lg2)}`);
}

function badLen(len: unknown): never {
  throw new RangeError(`len must be a safe integer >= 0, got ${String(len)}`);
}

function hexPos(frame: number, off: number, shift: number): string {
  return `0x${((BigInt(frame) << BigInt(shift)) + BigInt(off)).toString(16)}`;
}

function limitText(shift: number): string {
  return END_OFF[shift] === 0 ? '2^64' : `2^${53 + shift} - 1 (frames of 2^${shift} bytes)`;
}

/** true when shift is an integer in [POS_SHIFT_MIN, POS_SHIFT_MAX]. */
function shiftOk(shift: number): boolean {
  // a table look-up: the range test written out cost enough bytecode that V8 stopped inlining some
  // of the hot functions that call it (a caller inlines its callees within one bytecode budget)
  return typeof shift === 'number' && SHIFT_OK[shift] === 1;
}

/**
 * Checks a frame shift and returns it (validate once where a geometry is set up).
 * @throws RangeError naming `name` unless shift is an integer in [9, 30].
 */
export function checkShift(name: string, shift: unknown): number {
  if (typeof shift !== 'number' || !shiftOk(shift)) {
    throw new RangeError(`${name} must be an integer in [${POS_SHIFT_MIN}, ${POS_SHIFT_MAX}], got ${String(shift)}`);
  }
  return shift;
}

/** frame mod 2^k for a safe integer frame >= 0 and k in [0, 64], without fmod. */
function frameLow(frame: number, k: number): number {
  return frame - Math.floor(frame * INV_POW2[k]) * POW2[k];
}

// ---- conversions at the public boundaries

/**
 * Splits a 64-bit address into (frame, off): PFN_DOWN / PHYS_PFN and offset_in_page
 * (include/linux/pfn.h, include/linux/mm.h), iova_pfn and iova_offset (include/linux/iova.h)
 * for shift = iova_shift. One store through a 64-bit view, no bigint arithmetic.
 * Also accepts 2^64 (an exclusive end).
 * @throws TypeError if a is not a bigint; RangeError naming `name` if it is outside [0, 2^64], or
 *   (shift 9, 10) beyond the positions that shift can hold.
 */
export function posFromBig(a: bigint, shift: number, out: FramePos, name = 'addr'): void {
  if (typeof a !== 'bigint' || a < 0n || a > U64_MAX || !shiftOk(shift)) {
    posFromBigSlow(a, shift, out, name);
    return;
  }
  posFromU64(a, shift, out);
  if (out.frame > END_FRAME[shift]) {
    throw new RangeError(`${name} 0x${a.toString(16)} is beyond ${limitText(shift)}, the last position frames of 2^${shift} bytes can hold`);
  }
}

/**
 * posFromBig for an address the caller has checked: a bigint in [0, 2^64), and a shift in
 * [9, 30]. Nothing is checked again: for shift 11 to 30 every such address's frame is a safe
 * integer; for 9 and 10 the caller must check it against what the shift can hold (posFromBig
 * does). For the DMA API's hot entry points, which validate their bigint arguments first.
 */
export function posFromU64(a: bigint, shift: number, out: FramePos): void {
  U64[0] = a;
  const lo = U32[LO];
  out.frame = U32[HI] * POW2[32 - shift] + Math.floor(lo * INV_POW2[shift]);
  out.off = lo & (POW2[shift] - 1);
}

function posFromBigSlow(a: unknown, shift: number, out: FramePos, name: string): void {
  if (!shiftOk(shift)) badShift(shift);
  if (typeof a !== 'bigint') throw new TypeError(`${name} must be a bigint address, got ${typeof a} ${String(a)}`);
  if (a === U64_END && END_OFF[shift] === 0) {
    out.frame = END_FRAME[shift];
    out.off = 0;
    return;
  }
  throw new RangeError(`${name} must be in [0, 2^64], got ${a < 0n ? '' : '0x'}${a < 0n ? String(a) : a.toString(16)}`);
}

/**
 * The position as an exact bigint: PFN_PHYS / iova_dma_addr ((dma_addr_t)pfn << shift) plus the
 * offset. One 64-bit word written as two halves; the only allocation is the result.
 */
export function posToBig(frame: number, off: number, shift: number): bigint {
  if (!shiftOk(shift)) badShift(shift);
  const k = 32 - shift;
  const hi = Math.floor(frame * INV_POW2[k]);
  if (hi >= 4294967296) return U64_END;
  U32[HI] = hi;
  U32[LO] = (frame - hi * POW2[k]) * POW2[shift] + off;
  return U64[0];
}

/**
 * Splits an address held as a number (a safe integer, as the layouts' Float64Array columns hold
 * them) into (frame, off): PFN_DOWN and offset_in_page.
 * @throws RangeError if x is not a safe integer >= 0.
 */
export function posFromNum(x: number, shift: number, out: FramePos): void {
  if (!(x >= 0 && x <= MAX_SAFE && Math.floor(x) === x)) {
    throw new RangeError(`x must be a safe integer >= 0, got ${String(x)}`);
  }
  if (!shiftOk(shift)) badShift(shift);
  const frame = Math.floor(x * INV_POW2[shift]);
  out.frame = frame;
  out.off = x - frame * POW2[shift];
}

/** true when the position is at most 2^53 - 1, so posToNum gives it exactly. */
export function posFitsNum(frame: number, off: number, shift: number): boolean {
  if (!shiftOk(shift)) badShift(shift);
  return frame * POW2[shift] + off <= MAX_SAFE;
}

/**
 * The position as an exact number: PFN_PHYS(frame) + off.
 * @throws RangeError when it exceeds 2^53 - 1 (check posFitsNum, or use posToBig).
 */
export function posToNum(frame: number, off: number, shift: number): number {
  if (!shiftOk(shift)) badShift(shift);
  const x = frame * POW2[shift] + off;
  if (x > MAX_SAFE) throw new RangeError(`position ${hexPos(frame, off, shift)} does not fit a safe integer`);
  return x;
}

/**
 * Writes a position given as its two 32-bit halves (hi * 2^32 + lo; a page-table entry's words).
 * @throws RangeError if a half is not a u32, or (shift 9, 10) beyond the positions that shift can hold.
 */
export function posFromWords(hi: number, lo: number, shift: number, out: FramePos): void {
  if ((hi >>> 0) !== hi || (lo >>> 0) !== lo) throw new RangeError(`hi and lo must be u32 values, got ${String(hi)}, ${String(lo)}`);
  if (!shiftOk(shift)) badShift(shift);
  const frame = hi * POW2[32 - shift] + Math.floor(lo * INV_POW2[shift]);
  if (frame > END_FRAME[shift]) throw new RangeError(`position 0x${hi.toString(16)}_${lo.toString(16).padStart(8, '0')} is beyond ${limitText(shift)}`);
  out.frame = frame;
  out.off = lo & (POW2[shift] - 1);
}

/** upper_32_bits() (include/linux/wordpart.h) of the position; 0 for 2^64, as a 64-bit variable would wrap it. */
export function posHi32(frame: number, shift: number): number {
  if (!shiftOk(shift)) badShift(shift);
  const hi = Math.floor(frame * INV_POW2[32 - shift]);
  return hi >= 4294967296 ? 0 : hi;
}

/** lower_32_bits() (include/linux/wordpart.h) of the position. */
export function posLo32(frame: number, off: number, shift: number): number {
  if (!shiftOk(shift)) badShift(shift);
  return frameLow(frame, 32 - shift) * POW2[shift] + off;
}

/**
 * The same position in frames of 2^toShift bytes (pfn <-> IOVA pfn <-> swiotlb slot index:
 * `addr >> IO_TLB_SHIFT` against PFN_DOWN).
 * @throws RangeError when toShift < 11 and the position is beyond what toShift can hold.
 */
export function posRescale(frame: number, off: number, fromShift: number, toShift: number, out: FramePos): void {
  if (!shiftOk(fromShift)) badShift(fromShift);
  if (!shiftOk(toShift)) badShift(toShift);
  if (toShift <= fromShift) {
    const d = fromShift - toShift;
    const q = Math.floor(off * INV_POW2[toShift]);
    const f = frame * POW2[d] + q;
    const o = off - q * POW2[toShift];
    if (f > END_FRAME[toShift]) { // (a valid input never reaches END_FRAME with an offset past END_OFF)
      throw new RangeError(`position ${hexPos(frame, off, fromShift)} is beyond ${limitText(toShift)}`);
    }
    out.frame = f;
    out.off = o;
    return;
  }
  const d = toShift - fromShift;
  const f = Math.floor(frame * INV_POW2[d]);
  out.off = (frame - f * POW2[d]) * POW2[fromShift] + off;
  out.frame = f;
}

// ---- arithmetic

/**
 * position + len (`phys + size`, `iova + iova_len`), with the overflow check the kernel writes as
 * check_add_overflow() (include/linux/overflow.h): a result past 2^64 (or the shift's limit) throws
 * instead of wrapping.
 * @throws RangeError if len is not a safe integer >= 0 or the sum is past the last position.
 */
export function posAdd(frame: number, off: number, shift: number, len: number, out: FramePos): void {
  if (!(Number.isSafeInteger(len) && len >= 0)) badLen(len);
  if (!shiftOk(shift)) badShift(shift);
  if (len >= TWO_52) {
    addLong(frame, off, shift, len, out);
    return;
  }
  // off + len as whole frames and a rest. The frame carry is computed, not branched on: with
  // random offsets a branch on it mispredicts half the time (measured 2x slower).
  const t = off + len; // < 2^52 + 2^30: exact
  const f = Math.floor(t * INV_POW2[shift]);
  const o = t - f * POW2[shift];
  // frame + f <= END_FRAME, tested without forming a sum that could round
  const room = END_FRAME[shift] - f;
  if (frame > room || (frame === room && o > END_OFF[shift])) addOverflow(frame, off, shift, len);
  out.frame = frame + f;
  out.off = o;
}

/** posAdd for len >= 2^52, out of its body (hot callers inline posAdd; see shiftOk). */
function addLong(frame: number, off: number, shift: number, len: number, out: FramePos): void {
  const size = POW2[shift], inv = INV_POW2[shift];
  // off + len might round: split len first (off + its rest < 2^31 carries at most one frame)
  const lf = Math.floor(len * inv);
  const t = off + (len - lf * size);
  const carry = Math.floor(t * inv);
  const f = lf + carry;
  const o = t - carry * size;
  const room = END_FRAME[shift] - f;
  if (frame > room || (frame === room && o > END_OFF[shift])) addOverflow(frame, off, shift, len);
  out.frame = frame + f;
  out.off = o;
}

function addOverflow(frame: number, off: number, shift: number, len: number): never {
  throw new RangeError(`position ${hexPos(frame, off, shift)} + len ${len} is past ${limitText(shift)}`);
}

/**
 * position - len (`phys - iova_off`, `addr - pad`), checked like check_sub_overflow()
 * (include/linux/overflow.h): a result below 0 throws instead of wrapping.
 * @throws RangeError if len is not a safe integer >= 0 or it is larger than the position.
 */
export function posSubLen(frame: number, off: number, shift: number, len: number, out: FramePos): void {
  if (!(Number.isSafeInteger(len) && len >= 0)) badLen(len);
  if (!shiftOk(shift)) badShift(shift);
  const size = POW2[shift], inv = INV_POW2[shift];
  const lf = Math.floor(len * inv);
  const t = off - (len - lf * size); // in (-2^shift, 2^shift): borrow is floor(t / 2^shift), -1 or 0
  const borrow = Math.floor(t * inv);
  const f = frame - lf + borrow;
  if (f < 0) subUnderflow(frame, off, shift, len);
  out.frame = f;
  out.off = t - borrow * size;
}

function subUnderflow(frame: number, off: number, shift: number, len: number): never {
  throw new RangeError(`position ${hexPos(frame, off, shift)} - len ${len} is below 0`);
}

/**
 * end - start as a length in bytes (`end - start` of a range; the span passed to a map or unmap),
 * checked like check_sub_overflow(): both positions in frames of 2^shift bytes.
 * @throws RangeError if end < start or the difference exceeds 2^53 - 1.
 */
export function posDiff(endFrame: number, endOff: number, startFrame: number, startOff: number, shift: number): number {
  if (!shiftOk(shift)) badShift(shift);
  // (endFrame - startFrame) * 2^shift is exact (a power-of-two scale); the sum is exact whenever
  // the true difference is a safe integer and rounds to >= 2^53 (or stays < 0) otherwise
  const d = (endFrame - startFrame) * POW2[shift] + (endOff - startOff);
  if (d < 0 || d > MAX_SAFE) {
    throw new RangeError(`end ${hexPos(endFrame, endOff, shift)} - start ${hexPos(startFrame, startOff, shift)} is ${d < 0 ? 'negative' : 'not a safe integer'}`);
  }
  return d;
}

/** Three-way compare of two positions with the same shift: -1, 0 or 1. */
export function posCmp(aFrame: number, aOff: number, bFrame: number, bOff: number): number {
  if (aFrame !== bFrame) return aFrame < bFrame ? -1 : 1;
  return aOff === bOff ? 0 : aOff < bOff ? -1 : 1;
}

// ---- alignment (include/linux/align.h -> include/vdso/align.h; include/linux/iova.h)

/**
 * ALIGN_DOWN(x, 2^lg2) (include/vdso/align.h), iova_align_down(), PFN_DOWN-then-PFN_PHYS for
 * lg2 = shift: the position with its low lg2 bits cleared.
 */
export function posAlignDown(frame: number, off: number, shift: number, lg2: number, out: FramePos): void {
  if (!shiftOk(shift)) badShift(shift);
  if ((lg2 >>> 0) !== lg2 || lg2 > 64) badLg2('lg2', lg2, 64);
  if (lg2 <= shift) {
    out.frame = frame;
    out.off = off - (off & (POW2[lg2] - 1));
    return;
  }
  out.frame = frame - frameLow(frame, lg2 - shift);
  out.off = 0;
}

/**
 * ALIGN(x, 2^lg2) (include/vdso/align.h: __ALIGN_KERNEL), iova_align(), PAGE_ALIGN for
 * lg2 = PAGE_SHIFT: the smallest multiple of 2^lg2 at or above the position.
 * Unlike ALIGN on a u64, nothing wraps to 0: aligning up past 2^64 - 1 gives the end position
 * 2^64 (a multiple of every 2^lg2). A caller that models a kernel path relying on the wrap must
 * test for that end itself. Only shift 9 and 10, whose positions end below 2^64, can overflow,
 * and that throws.
 * @throws RangeError if the aligned position is beyond the shift's limit.
 */
export function posAlignUp(frame: number, off: number, shift: number, lg2: number, out: FramePos): void {
  if (!shiftOk(shift)) badShift(shift);
  if ((lg2 >>> 0) !== lg2 || lg2 > 64) badLg2('lg2', lg2, 64);
  // (computed, not branched on whether the position is already aligned: see posAdd)
  let f: number, o: number;
  if (lg2 <= shift) {
    const m = POW2[lg2] - 1;
    const t = (off + m) & ~m; // <= 2^shift: carries at most one frame
    const carry = Math.floor(t * INV_POW2[shift]);
    f = frame + carry;
    o = t - carry * POW2[shift];
  } else {
    const k = lg2 - shift;
    const r = frameLow(frame, k);
    f = frame - r + Math.sign(r + off) * POW2[k];
    o = 0;
  }
  if (f > END_FRAME[shift]) alignOverflow(frame, off, shift, lg2);
  out.frame = f;
  out.off = o;
}

function alignOverflow(frame: number, off: number, shift: number, lg2: number): never {
  throw new RangeError(`ALIGN(${hexPos(frame, off, shift)}, 2^${lg2}) is past ${limitText(shift)}`);
}

/** IS_ALIGNED(x, 2^lg2) (include/vdso/align.h), PAGE_ALIGNED: the low lg2 bits of the position are 0. */
export function posIsAligned(frame: number, off: number, shift: number, lg2: number): boolean {
  if (!shiftOk(shift)) badShift(shift);
  if ((lg2 >>> 0) !== lg2 || lg2 > 64) badLg2('lg2', lg2, 64);
  if (lg2 <= shift) return (off & (POW2[lg2] - 1)) === 0;
  return off === 0 && frameLow(frame, lg2 - shift) === 0;
}

/**
 * x & (2^lg2 - 1): iova_offset() (include/linux/iova.h) for lg2 = iova_shift, offset_in_page()
 * for lg2 = PAGE_SHIFT. lg2 is at most 53 so that the result is exact.
 * @throws RangeError if lg2 is not an integer in [0, 53].
 */
export function posOffsetIn(frame: number, off: number, shift: number, lg2: number): number {
  if (!shiftOk(shift)) badShift(shift);
  if ((lg2 >>> 0) !== lg2 || lg2 > 53) badLg2('lg2', lg2, 53);
  if (lg2 <= shift) return off & (POW2[lg2] - 1);
  return frameLow(frame, lg2 - shift) * POW2[shift] + off;
}

// ---- boundaries and masks

/**
 * Bytes from the position to the next multiple of 2^lg2 (2^lg2 when it is on one):
 * `mask - (mask & paddr) + 1` of get_max_segment_size() (block/blk.h) with
 * mask = seg_boundary_mask = 2^lg2 - 1, any mask up to 0xffffffffffffffff.
 * The result is capped at 2^53: larger than any length, so min(len, result) is the piece of a
 * range that stays below the boundary (see posLenToBoundary).
 */
export function posToBoundary(frame: number, off: number, shift: number, lg2: number): number {
  if (!shiftOk(shift)) badShift(shift);
  if ((lg2 >>> 0) !== lg2 || lg2 > 64) badLg2('lg2', lg2, 64);
  if (lg2 <= shift) return POW2[lg2] - (off & (POW2[lg2] - 1));
  const k = lg2 - shift;
  // Exact up to lg2 = 53 (at most 2^53). Above, with fm = frameLow(frame, k): the distance is at
  // most 2^53 only when at most 2^(53 - shift) frames remain; then 2^k - fm is exact (fm >= 2^(k-1),
  // Sterbenz) and so is d. Otherwise the rounded d is still above 2^53 (rounding is monotonic)
  // and the cap applies.
  const d = (POW2[k] - frameLow(frame, k)) * POW2[shift] - off;
  return d > TWO_53 ? TWO_53 : d;
}

/**
 * How many of `len` bytes from the position fit before the next 2^lg2 boundary: the segment
 * split of get_max_segment_size() (block/blk.h) without its max_segment_size term, and of
 * blk_map_iter_next() cutting a bio_vec at a segment boundary.
 */
export function posLenToBoundary(frame: number, off: number, shift: number, lg2: number, len: number): number {
  const b = posToBoundary(frame, off, shift, lg2);
  return len < b ? len : b;
}

/**
 * A 64-bit mask split once into two u32 halves (the "converted once" form the hot functions
 * take as (hi, lo)): dma_get_seg_boundary(), a DMA mask, swiotlb's min_align_mask.
 */
export class Mask64 {
  readonly hi: number;
  readonly lo: number;

  /** @throws TypeError if mask is not a bigint; RangeError if outside [0, 2^64). */
  constructor(mask: bigint, name = 'mask') {
    if (typeof mask !== 'bigint') throw new TypeError(`${name} must be a bigint mask, got ${typeof mask} ${String(mask)}`);
    if (mask < 0n || mask > U64_MAX) throw new RangeError(`${name} must be in [0, 2^64), got ${String(mask)}`);
    U64[0] = mask;
    this.hi = U32[HI];
    this.lo = U32[LO];
  }
}

/**
 * k for a boundary mask 2^k - 1 (k in [0, 64]): dma_get_seg_boundary(), a queue's
 * seg_boundary_mask or virt_boundary_mask; the lg2 the boundary functions take.
 * @throws TypeError if mask is not a bigint; RangeError naming `name` if it is not 2^k - 1.
 */
export function maskLg2(mask: bigint, name = 'mask'): number {
  if (typeof mask !== 'bigint') throw new TypeError(`${name} must be a bigint mask, got ${typeof mask} ${String(mask)}`);
  if (mask < 0n || mask > U64_MAX || (mask & (mask + 1n)) !== 0n) {
    throw new RangeError(`${name} must be 2^k - 1 for k in [0, 64], got ${mask < 0n ? String(mask) : `0x${mask.toString(16)}`}`);
  }
  return mask === 0n ? 0 : mask.toString(2).length;
}

/**
 * position & mask, the mask as its u32 halves (a Mask64's hi and lo): `addr & boundary_mask`
 * (kernel/dma/swiotlb.c: swiotlb_search_pool_area()), swiotlb_align_offset()'s
 * `addr & dma_get_min_align_mask(dev) & ...`. 2^64 & mask is 0, as in a u64.
 */
export function posAndMask(frame: number, off: number, shift: number, maskHi: number, maskLo: number, out: FramePos): void {
  if (!shiftOk(shift)) badShift(shift);
  const k = 32 - shift;
  const hi = Math.floor(frame * INV_POW2[k]);
  const lo = (frame - hi * POW2[k]) * POW2[shift] + off;
  // & works on the low 32 bits of each operand (ToInt32), exactly the u32 halves; >>> 0 reads them back unsigned
  const rhi = (hi & maskHi) >>> 0;
  const rlo = (lo & maskLo) >>> 0;
  out.frame = rhi * POW2[k] + Math.floor(rlo * INV_POW2[shift]);
  out.off = rlo & (POW2[shift] - 1);
}

/** (position & mask) != 0, the mask as u32 halves: `dma_addr & seg_mask` in __finalise_sg() (drivers/iommu/dma-iommu.c). */
export function posTestMask(frame: number, off: number, shift: number, maskHi: number, maskLo: number): boolean {
  if (!shiftOk(shift)) badShift(shift);
  const k = 32 - shift;
  const hi = Math.floor(frame * INV_POW2[k]);
  const lo = (frame - hi * POW2[k]) * POW2[shift] + off;
  return (hi & maskHi) !== 0 || (lo & maskLo) !== 0;
}

// ---- lengths and frame counts (plain safe integers)

/**
 * x & (2^lg2 - 1) for a safe integer x >= 0 (the offset of an address or length held as a number):
 * iova_offset(), offset_in_page(); `x - floor(x / 2^lg2) * 2^lg2` by an exact reciprocal, no fmod.
 * lg2 in [0, 53]; the caller guarantees x.
 */
export function lowBits(x: number, lg2: number): number {
  if ((lg2 >>> 0) !== lg2 || lg2 > 53) badLg2('lg2', lg2, 53);
  return x - Math.floor(x * INV_POW2[lg2]) * POW2[lg2];
}

/**
 * Frames of 2^shift bytes needed to cover len bytes: PFN_UP() (include/linux/pfn.h),
 * DIV_ROUND_UP(len, granule), `iova_align(iovad, size + iova_off) >> iova_shift(iovad)`
 * (pass off + len: the frames a range touches from an offset inside its first frame).
 * @throws RangeError if len is not a safe integer >= 0.
 */
export function nrFramesUp(len: number, shift: number): number {
  if (!(Number.isSafeInteger(len) && len >= 0)) badLen(len);
  if (!shiftOk(shift)) badShift(shift);
  return Math.ceil(len * INV_POW2[shift]);
}

/**
 * ALIGN(len, 2^lg2) for a length: iova_align() (include/linux/iova.h), PAGE_ALIGN.
 * @throws RangeError if len is not a safe integer >= 0, lg2 not in [0, 53], or the result exceeds 2^53 - 1.
 */
export function alignUpLen(len: number, lg2: number): number {
  if (!(Number.isSafeInteger(len) && len >= 0)) badLen(len);
  if ((lg2 >>> 0) !== lg2 || lg2 > 53) badLg2('lg2', lg2, 53);
  const r = Math.ceil(len * INV_POW2[lg2]) * POW2[lg2];
  if (r > MAX_SAFE) throw new RangeError(`ALIGN(${len}, 2^${lg2}) exceeds 2^53 - 1`);
  return r;
}
