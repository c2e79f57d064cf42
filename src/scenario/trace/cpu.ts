// The CPU side of the address trace: a process's virtual address through its page-table entry to
// the frame, its folio and the physical address, with the memory type and P2P provider there.
// Read-only: nothing is faulted in, no counter moves.

import { checkAddr } from '../../base/index.ts';
import type { Machine } from '../../machine/index.ts';
import type { UserMm } from '../../mm/index.ts';
import { describeFlags } from '../../phyr/index.ts';
import type { CpuTrace, MemoryTrace, P2pProviderTrace } from './types.ts';

/** What the memory map says about phys (null: a hole). */
export function memoryAt(machine: Machine, phys: bigint): MemoryTrace | null {
  const r = machine.regionAt(phys);
  if (r === undefined) return null;
  return { region: r.name, kind: r.kind, mmio: r.mmio, structPage: r.hasStructPage, flags: describeFlags(r.rangeFlags) };
}

/** The P2P provider whose BAR holds phys, with the byte's bus address (null: none). */
export function p2pProviderAt(machine: Machine, phys: bigint): P2pProviderTrace | null {
  const r = machine.regionAt(phys);
  if (r === undefined || r.providerId === 0 || machine.topology === null) return null;
  const p = machine.topology.providerById(r.providerId);
  if (p === null) return null;
  return { id: p.id, device: p.owner.name, bar: p.bar, busOffset: p.busOffset, busAddr: phys + p.busOffset };
}

/**
 * traceCpu(machine, mm, va): the user page-table entry that maps va, the frame and folio (order,
 * refcount, pincount) behind it, the physical address, its memory type and P2P provider. A va no
 * VMA covers, or whose page is not present, traces with nulls from that layer down.
 */
export function traceCpu(machine: Machine, mm: UserMm, va: bigint): CpuTrace {
  checkAddr('va', va);
  const pte = mm.pteAt(va) ?? null;
  const v = mm.vmaAt(Number(va));
  const vma = v === undefined ? null : {
    start: BigInt(v.start), end: BigInt(v.end), kind: pte?.vmaKind ?? 'unknown', writable: v.writable,
  };
  if (pte === null || !pte.present || pte.pfn === null) {
    return { va, vma, pte, pfn: null, folio: null, zeroPage: false, phys: null, memory: null, p2p: null };
  }
  const ps = BigInt(machine.pageSize);
  // pfn is the first frame of the entry that maps va (one entry of a contiguous run)
  const phys = pte.pfn * ps + va % BigInt(pte.leafBytes / pte.contig);
  const pfn = phys / ps;
  const f = machine.folioOf(pfn);
  const folio = f === undefined ? null : { head: f.head, order: f.order, refcount: f.refcount, pincount: f.pincount };
  return { va, vma, pte, pfn, folio, zeroPage: pte.zeroPage, phys, memory: memoryAt(machine, phys), p2p: p2pProviderAt(machine, phys) };
}
