// Models: the per-object private pointers the kernel hangs off a struct (dev->dma_io_tlb_mem,
// dev->iommu_group->domain, dev->dma_iommu cookie, the machine's dma-debug hash): state that one
// layer keeps on an object owned by a lower layer. Each layer declares a typed key; the object
// stores the values in its own table, so every piece of state can be found and listed from the
// object that holds it (no module-level maps keyed by objects).

let nextSlotId = 0;

/** A typed key for one kind of state kept on a slot holder; `name` says which layer owns it. */
export class SlotKey<T> {
  /** Index into every holder's table (keys are created once, at module load). */
  readonly id: number;
  readonly name: string;
  /** Never read: it makes SlotKey<A> and SlotKey<B> different types. */
  declare readonly _type?: T;

  constructor(name: string) {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError(`name must be a non-empty string, got ${String(name)}`);
    this.id = nextSlotId++;
    this.name = name;
  }
}

/** The state other layers keep on one object (a device, a machine). */
export class Slots {
  private readonly values: unknown[] = [];
  private readonly keys: Array<SlotKey<unknown> | undefined> = [];

  /** The value stored under key, or undefined. */
  get<T>(key: SlotKey<T>): T | undefined {
    return this.values[key.id] as T | undefined;
  }

  /** Stores value under key (replacing any earlier value). */
  set<T>(key: SlotKey<T>, value: T): T {
    this.values[key.id] = value;
    this.keys[key.id] = key as SlotKey<unknown>;
    return value;
  }

  /** The value under key, created by make() on first use. */
  getOrCreate<T>(key: SlotKey<T>, make: () => T): T {
    const v = this.values[key.id] as T | undefined;
    return v !== undefined ? v : this.set(key, make());
  }

  /** Removes the value under key. */
  delete(key: SlotKey<unknown>): void {
    this.values[key.id] = undefined;
    this.keys[key.id] = undefined;
  }

  /** Every stored value with the name of its key, in key creation order. */
  list(): Array<{ readonly name: string; readonly value: unknown }> {
    const out: Array<{ name: string; value: unknown }> = [];
    for (let i = 0; i < this.keys.length; i++) {
      const k = this.keys[i];
      if (k !== undefined && this.values[i] !== undefined) out.push({ name: k.name, value: this.values[i] });
    }
    return out;
  }
}
