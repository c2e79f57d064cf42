// Models: what the kernel tracks for FOLL_PIN pins (mm/gup.c: the pinned folios' _pincount; the
// caller's page array, from which unpin_user_pages finds the folios again): here one record per pin
// call, owned by the machine, so that live pins can be listed and each unpin gives back exactly what
// its pin took (a second unpin is caught).

import { FolioRecord } from './folio.ts';

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
 * One pin call's record: the folios it pinned (what its unpin gives back), what it returned, and
 * whether it was unpinned already.
 */
export class GupPin<M extends { readonly id: number }> {
  /** The folios pinned, with their pin counts. */
  readonly rec: FolioRecord;
  /** Base pages returned, zero-page entries included. */
  nrPages = 0;
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
    this.rec = new FolioRecord(cap);
  }

  info(): PinInfo {
    return {
      id: this.id, process: this.mm.id, api: this.api, start: BigInt(this.start), len: this.len,
      nrPages: this.nrPages, pinnedPages: this.rec.pages, folios: this.rec.entries, gupFlags: this.gupFlags,
    };
  }
}

/** The machine's live pins, by id. */
export class PinTable<M extends { readonly id: number }> {
  private readonly live = new Map<number, GupPin<M>>();
  private nextId = 1;

  /** A new record with room for cap folio slots (not yet live: add() it once the pin returns pages). */
  open(mm: M, api: GupApi, start: number, gupFlags: number, cap = 16): GupPin<M> {
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
