// Models: kernel/dma/dummy.c (Linux 7.1: dma_dummy_ops, which drivers/acpi/scan.c installs for a
// device whose _CCA says DEV_DMA_NOT_SUPPORTED): every map fails (DMA_MAPPING_ERROR; -EINVAL from
// map_sg), an unmap is a WARN_ON_ONCE, dma_supported is 0 so dma_set_mask fails with -EIO.

import { err, type Result } from '../../base/internal.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { DMA_MAPPING_ERROR } from '../constants.ts';
import type { DmaMapOps, DmaOpsSeg, DmaOpsState, DmaOpsXlate } from './ops.ts';

export interface DummyOpsConfig {
  readonly kind: 'dummy';
}

export class DummyOps implements DmaMapOps {
  readonly kind = 'dummy' as const;
  private readonly mm: MachineMm;

  constructor(mm: MachineMm) {
    this.mm = mm;
  }

  /** The unmap's WARN_ON_ONCE: one flag per call site for the boot, so once per machine, whichever device and ops instance. */
  private warnOnce(site: string, dev: Device): void {
    this.mm.events.warnOnce(`kernel/dma/dummy.c:${site}`, 'dma-dummy', `${dev.name}: ${site}: WARN_ON_ONCE(true)`);
  }

  mapPhys(): bigint {
    return DMA_MAPPING_ERROR;
  }

  unmapPhys(dev: Device): void {
    this.warnOnce('dma_dummy_unmap_phys', dev);
  }

  mapSg(): Result<DmaOpsSeg[]> {
    return err('EINVAL', 'dma_dummy_map_sg: the device cannot do DMA');
  }

  unmapSg(dev: Device): void {
    this.warnOnce('dma_dummy_unmap_sg', dev);
  }

  dmaSupported(): boolean {
    return false;
  }

  translate(): DmaOpsXlate {
    return 'dma_dummy_ops: the device has no DMA path';
  }

  inspect(): DmaOpsState {
    return { kind: 'dummy', ops: 'dma_dummy_ops', entries: [], allocated: [], hints: {}, flushes: 0, bounceBytes: 0, extra: {} };
  }
}
