// Models: dma_buf_mmap_internal() (drivers/dma-buf/dma-buf.c: EINVAL without ops->mmap or past the
// end of the buffer) and an exporter's mmap that maps the buffer as a PFN map (VM_PFNMAP | VM_IO)
// filled at fault time from where the memory is now (vmf_insert_pfn_prot with the memory type's
// pgprot: write-back for RAM, write-combining for VRAM behind a BAR, as TTM's ttm_io_prot gives;
// ttm_bo_vm_fault). A move or a revoke zaps the PTEs (unmap_mapping_range on the dma-buf file);
// the next access faults again: at the new place after a move, SIGBUS after a revoke. GUP on the
// mapping fails with EFAULT (check_vma_flags).

import { checkLen, err, ok, type Result } from '../../base/index.ts';
import type { UserMm, VmPfnFault } from '../../mm/index.ts';
import type { DmaBuf } from './dma-buf.ts';

/** Options of dmaBufMmap. */
export interface DmaBufMmapOptions {
  /** Bytes to map (default: the buffer from pgoff on); rounded up to pages. */
  readonly len?: number;
  /** First page of the buffer to map (vma->vm_pgoff). */
  readonly pgoff?: number;
  readonly prot?: 'r' | 'rw';
}

/**
 * dma_buf_mmap() into a process: returns the user address. Errors: EINVAL (the exporter has no
 * mmap, as vfio-pci's dma-bufs; pgoff + pages beyond the buffer); ENODEV (released); those of mmap.
 */
export function dmaBufMmap(buf: DmaBuf, mm: UserMm, opts: DmaBufMmapOptions = {}): Result<bigint> {
  const ps = mm.machine.pageSize;
  const pgoff = opts.pgoff === undefined ? 0 : checkLen('opts.pgoff', opts.pgoff);
  const nrPages = Math.ceil(buf.size / ps);
  const len = opts.len === undefined ? (nrPages - pgoff) * ps : Math.ceil(checkLen('opts.len', opts.len, 1) / ps) * ps;
  if (buf.released) return err('ENODEV', `${buf.name} is released`);
  if (buf.ops.mmapCache === undefined) return err('EINVAL', `${buf.name}: the exporter (${buf.ops.expName}) has no mmap`);
  if (len <= 0 || pgoff + len / ps > nrPages) return err('EINVAL', `pages [${pgoff}, +${len / ps}) are beyond the ${nrPages}-page buffer`);
  const ops = {
    name: buf.name,
    fault(pg: number): Result<VmPfnFault> {
      const r = buf.ops.physRanges(buf);
      if (!r.ok) return r;
      let off = pg * ps;
      for (let i = 0; i < r.value.count; i++) {
        const l = r.value.lenAt(i);
        if (off < l) return ok({ pfn: Number((r.value.addrAt(i) + BigInt(off)) / BigInt(ps)), cache: buf.ops.mmapCache!(buf) });
        off -= l;
      }
      return err('EFAULT', `page ${pg} is beyond ${buf.name}`);
    },
  };
  const r = mm.mmap({ len, backing: { pfnmap: ops, pgoff }, prot: opts.prot ?? 'rw' });
  if (!r.ok) return r;
  const start = r.value;
  buf.cpuMappings.add({ zap: () => mm.zapVmaPtes(start, len) });
  return r;
}
