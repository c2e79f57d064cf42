// Models: confidential-computing guests as the DMA layer meets them (Linux 7.1.5 for everything
// below unless a line says otherwise): include/linux/cc_platform.h cc_platform_has() with
// CC_ATTR_MEM_ENCRYPT / CC_ATTR_GUEST_MEM_ENCRYPT / CC_ATTR_GUEST_SEV_SNP;
// arch/x86/mm/mem_encrypt.c: force_dma_unencrypted() (every device of a guest with encrypted memory
// must DMA to unencrypted memory); arch/x86/mm/pat/set_memory.c set_memory_decrypted() /
// set_memory_encrypted() as an encryption state per page of RAM; arch/x86/kernel/pci-dma.c:
// pci_swiotlb_detect() turning on SWIOTLB_FORCE in such a guest; kernel/dma/swiotlb.c:
// swiotlb_update_mem_attributes() decrypting the default bounce pool.
//
// The model cipher: memory the guest keeps private (the default for RAM) reaches a device only as
// ciphertext. The model stores what the CPU sees (plaintext); a device read of a private RAM byte at
// physical address a returns plaintext XOR k(a), and a device write of byte x to it leaves the CPU
// reading x XOR k(a) (the CPU decrypts what the device stored). k(a) is a byte of a 32-bit integer
// hash of a and of the guest kind's key, forced odd so that it is never 0: every byte a device reads
// from private memory differs from the CPU's. Shared (decrypted) pages, device memory (BARs) and
// pmem are reached in the clear.
// Model deviation: the cipher stands for the memory controller's AES-XTS (SEV-SNP) or the TDX
// module's MKTME key; it is deterministic and per physical address, not a real cipher, so that tests
// can assert exact ciphertext.
// Model deviation: a page keeps its contents through set_memory_decrypted/encrypted (TDX and
// SEV-SNP page conversion destroys them; callers convert freshly allocated or zeroed pages).
// Model deviation: no C-bit / TDX shared bit in DMA addresses (phys_to_dma == phys_to_dma_unencrypted,
// see direct-addr.ts); the encryption state is a per-page fact, not an address bit.

import { SlotKey, checkAddr, checkLen, checkOneOf, err, ok, type Result } from '../base/internal.ts';
import type { MachineMm } from '../mm/index.ts';
import type { Device } from '../pci/index.ts';
import { dmaContextOf } from './context.ts';
import './counters.ts';

/** The kinds of confidential-computing guest the machine option `cc` accepts. */
export const CC_KINDS = ['tdx', 'sev-snp'] as const;
export type CcKind = (typeof CC_KINDS)[number];

/** Machine option `cc`: the machine is a confidential-computing guest of this kind. */
export interface CcConfig {
  readonly kind: CcKind;
  /**
   * Leave the swiotlb pool encrypted (the kernel decrypts it in swiotlb_update_mem_attributes(); a
   * pool left private stands for a restricted-dma-pool or a pool set up before mem_encrypt_init).
   * Default false. With it, 7.3's swiotlb refuses every bounce of a device that must DMA unencrypted.
   */
  readonly encryptedSwiotlb?: boolean;
}

/** cc_platform_has() attributes the model answers. */
export type CcAttr = 'CC_ATTR_MEM_ENCRYPT' | 'CC_ATTR_GUEST_MEM_ENCRYPT' | 'CC_ATTR_GUEST_SEV_SNP';

const KEYS: Readonly<Record<CcKind, number>> = { tdx: 0x7d1c0de5, 'sev-snp': 0x5e55a9b3 };

/** The confidential-computing state of one machine: its kind and which RAM pages are shared. */
export class CcState {
  readonly kind: CcKind;
  private readonly key: number;
  private readonly pageShift: number;
  /** Page frame numbers of RAM pages shared with the host (decrypted). */
  private readonly shared = new Set<number>();

  constructor(kind: CcKind, pageShift: number) {
    this.kind = kind;
    this.key = KEYS[kind];
    this.pageShift = pageShift;
  }

  /** Whether the page frame holding phys is shared (decrypted). */
  isShared(phys: number): boolean {
    return this.shared.has(Math.floor(phys / 2 ** this.pageShift));
  }

  /** Marks nrPages frames from pfn shared (true) or private (false). */
  setShared(pfn: number, nrPages: number, shared: boolean): void {
    for (let i = 0; i < nrPages; i++) {
      if (shared) this.shared.add(pfn + i);
      else this.shared.delete(pfn + i);
    }
  }

  /** Number of shared pages. */
  get sharedPages(): number {
    return this.shared.size;
  }

  /** k(a): the model cipher's keystream byte at physical address a (odd, so never 0). */
  keystream(a: number): number {
    const lo = a % 4294967296;
    const hi = Math.floor(a / 4294967296);
    let h = (lo ^ Math.imul(hi, 0x85ebca6b) ^ this.key) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
    h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
    h ^= h >>> 16;
    return (h & 0xff) | 1;
  }

  /**
   * What crosses the bus for bytes[at, at + len) at physical address phys: the private RAM bytes
   * among them are XORed with the keystream in place (encrypting a read, or decrypting a write).
   */
  deviceView(mm: MachineMm, bytes: Uint8Array, at: number, phys: bigint, len: number): void {
    const region = mm.regionAt(phys);
    if (!region || region.kind !== 'ram') return;
    const ps = 2 ** this.pageShift;
    const base = Number(phys);
    let i = 0;
    while (i < len) {
      const a = base + i;
      const pageLeft = ps - (a % ps);
      const n = Math.min(len - i, pageLeft);
      if (!this.isShared(a)) {
        for (let j = 0; j < n; j++) bytes[at + i + j] ^= this.keystream(a + j);
      }
      i += n;
    }
  }
}

/** The slot on the machine that holds its confidential-computing state. */
const CC_STATE = new SlotKey<CcState>('cc-state');

/** Checks a `cc` machine option; returns it. @throws TypeError/RangeError naming the field. */
export function checkCcConfig(v: unknown): CcConfig {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`config.cc must be an object { kind }, got ${v === null ? 'null' : typeof v}`);
  for (const k of Object.keys(v)) {
    if (k !== 'kind' && k !== 'encryptedSwiotlb') throw new RangeError(`config.cc.${k} is not an option (known: kind, encryptedSwiotlb)`);
  }
  const c = v as CcConfig;
  checkOneOf('config.cc.kind', c.kind, CC_KINDS);
  if (c.encryptedSwiotlb !== undefined && typeof c.encryptedSwiotlb !== 'boolean') {
    throw new TypeError(`config.cc.encryptedSwiotlb must be a boolean, got ${typeof c.encryptedSwiotlb}`);
  }
  return c;
}

/** Makes the machine a confidential-computing guest (createMachine, before any device is attached). */
export function ccInstall(mm: MachineMm, cfg: CcConfig): CcState {
  return mm.slots.set(CC_STATE, new CcState(cfg.kind, mm.pageShift));
}

/** The machine's confidential-computing state, or null for an ordinary machine. */
export function ccStateOf(mm: MachineMm): CcState | null {
  return mm.slots.get(CC_STATE) ?? null;
}

/** cc_platform_has(attr) on this machine. */
export function ccPlatformHas(mm: MachineMm, attr: CcAttr): boolean {
  const cc = ccStateOf(mm);
  if (cc === null) return false;
  if (attr === 'CC_ATTR_GUEST_SEV_SNP') return cc.kind === 'sev-snp';
  return true;
}

/** force_dma_unencrypted(dev): in a guest with encrypted memory, every device DMAs to shared memory only. */
export function forceDmaUnencrypted(dev: Device): boolean {
  return ccStateOf(dmaContextOf(dev).mm) !== null;
}

function setEncryption(mm: MachineMm, fn: string, phys: bigint, numpages: number, shared: boolean): Result<void> {
  checkAddr('phys', phys);
  checkLen('numpages', numpages);
  const cc = ccStateOf(mm);
  // cc_platform_has(CC_ATTR_MEM_ENCRYPT) false: nothing to do, success
  if (cc === null) return ok();
  // arch/x86/mm/pat/set_memory.c: __set_memory_enc_pgtable() WARNs once about a misaligned address
  // and converts from the page holding it
  const off = phys % BigInt(mm.pageSize);
  if (off !== 0n) {
    mm.events.warnOnce('__set_memory_enc_pgtable:misaligned', 'set_memory', `misaligned address: 0x${phys.toString(16)}`, { phys });
    phys -= off;
  }
  if (numpages === 0) return ok();
  const end = phys + BigInt(numpages) * BigInt(mm.pageSize);
  const region = mm.regionAt(phys);
  if (!region || region.kind !== 'ram' || end > region.end) {
    return err('EINVAL', `${fn}: [0x${phys.toString(16)}, 0x${end.toString(16)}) is not RAM`);
  }
  cc.setShared(Number(phys >> BigInt(mm.pageShift)), numpages, shared);
  if (shared) mm.stats.ccPagesDecrypted += numpages;
  else mm.stats.ccPagesEncrypted += numpages;
  return ok();
}

/**
 * set_memory_decrypted(addr, numpages): shares numpages pages of RAM from phys with the host, so
 * devices read them in the clear. Model deviation: takes the physical address of the kernel's
 * linear map (there are no kernel virtual addresses). A no-op success outside a CC guest. In a
 * guest an unaligned phys gets a WARN (once per machine, "misaligned address") and is rounded down
 * to its page. Errors: EINVAL when the range is not RAM.
 */
export function setMemoryDecrypted(mm: MachineMm, phys: bigint, numpages: number): Result<void> {
  return setEncryption(mm, 'set_memory_decrypted', phys, numpages, true);
}

/** set_memory_encrypted(addr, numpages): makes the pages private again. Same rules as setMemoryDecrypted. */
export function setMemoryEncrypted(mm: MachineMm, phys: bigint, numpages: number): Result<void> {
  return setEncryption(mm, 'set_memory_encrypted', phys, numpages, false);
}

/** Whether every page of [phys, phys + len) is RAM shared with the host, or not RAM at all (MMIO). */
export function ccRangeShared(mm: MachineMm, phys: bigint, len: number): boolean {
  const cc = ccStateOf(mm);
  if (cc === null) return true;
  const region = mm.regionAt(phys);
  if (!region || region.kind !== 'ram') return true;
  const ps = mm.pageSize;
  const first = Number(phys) - (Number(phys) % ps);
  for (let a = first; a < Number(phys) + len; a += ps) if (!cc.isShared(a)) return false;
  return true;
}
