// Test support (not part of the public surface): the real memory model (MmMachine) with a kernel page
// allocator that can be told to fail, to test ENOMEM unwinding, and that hands out dirty pages, so a
// page table that does not zero its new table pages is noticed.

import { err, type Result } from '../base/index.ts';
import { MmMachine } from '../mm/machine.ts';

/** An MmMachine for IOMMU tests: ramBytes of System RAM (default 64 GiB; nothing is backed until written). */
export class TestMachine extends MmMachine {
  /** allocKernelPages calls left before it fails with ENOMEM (Infinity = never). */
  failAfter = Infinity;

  constructor(ramBytes = 2 ** 36) {
    super({ ramBytes });
  }

  /**
   * MmMachine.allocKernelPages, but ENOMEM once failAfter calls have been made, and the pages come
   * filled with 0xa5 instead of zeroed (kernel page allocations are not zeroed unless asked).
   */
  override allocKernelPages(order: number): Result<bigint> {
    if (this.failAfter <= 0) return err('ENOMEM', `TestMachine.failAfter reached: order ${order} refused`);
    const r = super.allocKernelPages(order);
    if (!r.ok) return r;
    this.failAfter--;
    const first = Number(r.value);
    for (let p = first; p < first + 2 ** order; p++) this.mem.view(BigInt(p) * BigInt(this.pageSize), this.pageSize).fill(0xa5);
    return r;
  }
}
