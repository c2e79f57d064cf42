// Models: what the kernel tracks implicitly for FOLL_PIN pins (mm/gup.c: the pinned folios' _pincount
// and the caller's page array, /proc/vmstat nr_foll_pin_acquired): here one record per pin call, owned
// by the machine, so live pins can be listed and each unpin gives back exactly what its pin took.

/** Which entry point took a pin. */
export type GupApi = 'pin_user_pages' | 'pin_user_pages_fast' | 'pin_user_phyrs';

/** One live pin as MmMachine.listPins() reports it. */
export interface PinInfo {
  readonly id: number;
  /** The process (UserMm.id) whose memory is pinned. */
  readonly process: number;
  readonly api: GupApi;
  /** First user address covered (pin_user_pages*: rounded down to its page). */
  readonly start: bigint;
  /** Bytes covered from start (a short pin covers less than was asked). */
  readonly len: number;
  /** Base pages returned (the kernel's return value); zero-page entries included. */
  readonly nrPages: number;
  /** Base pages that took a pin (the shared zero page takes none). */
  readonly pinnedPages: number;
  /** Folio entries the pin holds (consecutive pages of one folio are one entry). */
  readonly folios: number;
  readonly gupFlags: number;
}

/**
 * What one pin took: for each entry a folio record index and how many pins (and references) it holds
 * there, so the unpin can give back exactly that.
 */
export class GupPin<M extends { readonly id: number }> {
  /** Folio record index per entry. */
  f: Int32Array;
  /** Pins per entry. */
  r: Int32Array;
  /** Entries in use. */
  n = 0;
  /** Base pages returned, zero-page entries included. */
  nrPages = 0;
  /** Base pages that took a pin. */
  pinnedPages = 0;
  /** Bytes covered from start. */
  len = 0;
  active = true;

  constructor(
    readonly id: number,
    readonly mm: M,
    readonly api: GupApi,
    readonly start: number,
    readonly gupFlags: number,
    cap: number,
  ) {
    this.f = new Int32Array(Math.max(16, cap));
    this.r = new Int32Array(Math.max(16, cap));
  }

  /** Makes room for `more` entries. */
  reserve(more: number): void {
    const need = this.n + more;
    if (need <= this.f.length) return;
    const cap = Math.max(need, this.f.length * 2);
    const nf = new Int32Array(cap); nf.set(this.f.subarray(0, this.n)); this.f = nf;
    const nr = new Int32Array(cap); nr.set(this.r.subarray(0, this.n)); this.r = nr;
  }

  /** Adds refs pins of folio f (merged into the last entry when it is the same folio). */
  add(f: number, refs: number): void {
    const n = this.n;
    if (n > 0 && this.f[n - 1] === f) { this.r[n - 1] += refs; return; }
    this.reserve(1);
    this.f[n] = f;
    this.r[n] = refs;
    this.n = n + 1;
  }

  info(): PinInfo {
    return {
      id: this.id, process: this.mm.id, api: this.api, start: BigInt(this.start), len: this.len,
      nrPages: this.nrPages, pinnedPages: this.pinnedPages, folios: this.n, gupFlags: this.gupFlags,
    };
  }
}

/** The machine's live pins, by id. */
export class PinTable<M extends { readonly id: number }> {
  private readonly live = new Map<number, GupPin<M>>();
  private nextId = 1;

  /** A new record (not yet live: add() it once the pin returns pages). */
  open(mm: M, api: GupApi, start: number, gupFlags: number, cap: number): GupPin<M> {
    return new GupPin(this.nextId++, mm, api, start, gupFlags, cap);
  }

  add(pin: GupPin<M>): void {
    this.live.set(pin.id, pin);
  }

  remove(pin: GupPin<M>): void {
    this.live.delete(pin.id);
  }

  /** Live pins. */
  get count(): number {
    return this.live.size;
  }

  /** Every live pin, oldest first. */
  list(): PinInfo[] {
    return [...this.live.values()].map((p) => p.info());
  }
}
