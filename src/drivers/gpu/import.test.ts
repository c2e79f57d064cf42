import { describe, expect, it } from 'vitest';
import { patternBytes, unwrap } from '../../base/index.ts';
import { DMA_BIDIRECTIONAL } from '../../dma/index.ts';
import { dmabufMachine } from '../../scenario/dmabuf.ts';
import { dmaBufMapAttachment, dmaBufPin, dmaBufUnpin, dmaResvLock, dmaResvUnlock, gpuBoCreate, gpuBoExport, gpuBoMigrate, type GpuBo } from '../dmabuf/index.ts';
import { gpuFabricConnect, gpuProbe, gpuRead, gpuWrite, type Gpu } from './gpu.ts';
import { gpuImportDmabuf, gpuImportDmabufFabric, gpuImportRelease, gpuImportRevalidate } from './import.ts';

const K64 = 64 * 1024;

/** The bytes of a buffer object where it is now, read by the CPU. */
function boBytes(bo: GpuBo): Uint8Array {
  const r = bo.ranges();
  const out = new Uint8Array(bo.size);
  for (let i = 0, at = 0; i < r.count; at += r.lenAt(i), i++) out.set(bo.mm.mem.read(r.addrAt(i), r.lenAt(i)), at);
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** gpu0 exports a VRAM buffer; the importer GPU (gpu1 below the same switch, or gpu3 behind another host bridge) is its fabric peer. */
function fabricRig(importer = 'gpu1'): { m: ReturnType<typeof dmabufMachine>; gpu: Gpu; bo: GpuBo } {
  const m = dmabufMachine('strict');
  const g0 = unwrap(gpuProbe(m.device('gpu0')));
  const gpu = unwrap(gpuProbe(m.device(importer)));
  gpuFabricConnect(gpu, g0);
  const bo = unwrap(gpuBoCreate(g0.dev, K64, 'vram'));
  return { m, gpu, bo };
}

describe('GPU dma-buf import over the fabric (amdgpu XGMI)', () => {
  it('a buffer moved to system memory is mapped again through the DMA API, and over the fabric once it is back in VRAM', () => {
    const { gpu, bo } = fabricRig();
    const buf = unwrap(gpuBoExport(bo));
    const imp = unwrap(gpuImportDmabufFabric(gpu, buf));
    expect(imp.path).toBe('fabric');
    expect(imp.list).toBeNull();
    // amdgpu_vm_bo_update(): the exporter's BO is used only while it is in VRAM; otherwise the
    // import's own pages, mapped by dma_buf_map_attachment() in amdgpu_ttm_backend_bind()
    unwrap(gpuBoMigrate(bo, 'system'));
    expect(imp.invalidations).toBe(1);
    expect(imp.mapping).toBeNull();
    unwrap(gpuImportRevalidate(imp));
    expect(imp.path).toBe('system');
    expect(imp.list).not.toBeNull();
    expect(imp.att.live.size).toBeGreaterThan(0);
    const bytes = patternBytes(K64, 5);
    unwrap(gpuWrite(gpu, imp.va!, bytes));
    expect(sameBytes(boBytes(bo), bytes)).toBe(true);
    // back in VRAM: the DMA mapping goes with the move, the fabric entries come back
    unwrap(gpuBoMigrate(bo, 'vram'));
    expect(imp.list).toBeNull();
    expect(imp.att.live.size).toBe(0);
    unwrap(gpuImportRevalidate(imp));
    expect(imp.path).toBe('fabric');
    const back = unwrap(gpuRead(gpu, imp.va!, K64));
    expect(sameBytes(back, bytes)).toBe(true);
    gpuImportRelease(imp);
    expect(buf.attachments).toEqual([]);
  });

  it('a buffer in system memory at import time imports through the DMA API; a GPU off the fabric is refused (EOPNOTSUPP)', () => {
    const { m, gpu, bo } = fabricRig();
    unwrap(gpuBoMigrate(bo, 'system'));
    const buf = unwrap(gpuBoExport(bo));
    const imp = unwrap(gpuImportDmabufFabric(gpu, buf));
    expect(imp.path).toBe('system');
    const bytes = patternBytes(K64, 9);
    unwrap(gpuWrite(gpu, imp.va!, bytes));
    expect(sameBytes(boBytes(bo), bytes)).toBe(true);
    gpuImportRelease(imp);
    const off = unwrap(gpuProbe(m.device('gpu2')));
    const r = gpuImportDmabufFabric(off, buf);
    expect(r.ok ? 'ok' : r.errno).toBe('EOPNOTSUPP');
    expect(buf.attachments).toEqual([]);
  });

  it('a fabric peer keeps peer2peer where PCI P2P cannot reach the exporter, so a pin stays in VRAM', () => {
    // gpu3 sits behind a host bridge that is not whitelisted: pci_p2pdma_distance() < 0 from gpu0
    const { m, gpu, bo } = fabricRig('gpu3');
    const buf = unwrap(gpuBoExport(bo));
    const imp = unwrap(gpuImportDmabufFabric(gpu, buf));
    // amdgpu_dma_buf_attach(): peer2peer is cleared only when the importer is not XGMI-accessible
    // (amdgpu_dmabuf_is_xgmi_accessible) and the PCI distance is negative
    expect(imp.att.peer2peer).toBe(true);
    // amdgpu_dma_buf_pin(): VRAM stays allowed when every attachment can do P2P
    dmaResvLock(buf);
    unwrap(dmaBufPin(imp.att));
    dmaResvUnlock(buf);
    expect(bo.placement).toBe('vram');
    expect(imp.invalidations).toBe(0);
    dmaResvLock(buf);
    dmaBufUnpin(imp.att);
    dmaResvUnlock(buf);
    // the same GPU through the DMA API is no XGMI importer: its peer2peer goes, and with it VRAM
    const dmaApi = unwrap(gpuImportDmabuf(unwrap(gpuProbe(m.device('gpu3'))), buf));
    expect(dmaApi.att.peer2peer).toBe(false);
    expect(bo.placement).toBe('system');
    gpuImportRelease(dmaApi);
    gpuImportRelease(imp);
  });

  it('the exporter refuses to DMA-map VRAM for a fabric peer (WARN, EINVAL) and moves nothing', () => {
    const { m, gpu, bo } = fabricRig();
    const buf = unwrap(gpuBoExport(bo));
    const imp = unwrap(gpuImportDmabufFabric(gpu, buf));
    const warns = m.events.count('WARN');
    // amdgpu_dma_buf_map(): WARN_ON(amdgpu_dmabuf_is_xgmi_accessible()) in the TTM_PL_VRAM case
    dmaResvLock(buf);
    const r = dmaBufMapAttachment(imp.att, DMA_BIDIRECTIONAL);
    dmaResvUnlock(buf);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(m.events.count('WARN')).toBe(warns + 1);
    expect(imp.att.live.size).toBe(0);
    expect(bo.placement).toBe('vram');
    gpuImportRelease(imp);
  });
});
