// Tests for P2PDMA: map types and distances of the cases calc_map_type_and_dist() documents, ACS, the host
// bridge whitelist, AMD Zen, the map-type cache, pci_p2pdma_state, bus offsets, distance_many rules.
import { describe, expect, it } from 'vitest';
import { GiB, KiB } from '../base/index.ts';
import { RANGE_DEVICE, withProvider } from '../phyr/index.ts';
import { Device } from './device.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NONE, PCI_P2PDMA_MAP_NOT_SUPPORTED, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE,
  PCI_ANY_ID, PCI_P2PDMA_MAP_UNKNOWN, PCI_P2PDMA_WHITELIST, PciP2pdmaMapState, REQ_SAME_HOST_BRIDGE, calcMapTypeAndDist,
  cpuSupportsP2pdma, hostBridgeWhitelist, pciBusAddress, pciP2pdmaBusAddrMap, pciP2pdmaDistance, pciP2pdmaDistanceMany,
  pciP2pdmaMapType, pciP2pdmaMapTypePeek, pciP2pdmaState, pciResourceStart, pcimP2pdmaInit, pcimP2pdmaProvider, providerForRangeFlags,
} from './p2pdma.ts';
import { toPciDev } from './pci-dev.ts';
import { buildTestTopology as build, exampleTopology as example } from '../../test/fixtures/pci-topology.ts';
import type { PciNodeConfig } from './topology.ts';

const NOT_WHITELISTED = { vendor: 0x1022, device: 0x1480 };

describe('constants', () => {
  it('have the kernel enum values and the pci_p2pdma_whitelist[] table', () => {
    expect([PCI_P2PDMA_MAP_UNKNOWN, PCI_P2PDMA_MAP_NONE, PCI_P2PDMA_MAP_NOT_SUPPORTED, PCI_P2PDMA_MAP_BUS_ADDR,
      PCI_P2PDMA_MAP_THRU_HOST_BRIDGE]).toEqual([0, 1, 2, 3, 4]);
    const ids = (since: string) => PCI_P2PDMA_WHITELIST.filter((e) => e.since === since)
      .map((e) => `${e.vendor.toString(16)}:${e.device === PCI_ANY_ID ? 'ANY' : e.device.toString(16)}${e.flags & REQ_SAME_HOST_BRIDGE ? '/same' : ''}`);
    expect(ids('<=7.0')).toEqual(['8086:3c00/same', '8086:3c01/same', '8086:2f00/same', '8086:2f01/same',
      '8086:2030', '8086:2031', '8086:2032', '8086:2033', '8086:2020', '8086:9a2']);
    expect(ids('7.1.5')).toEqual(['8086:b25', '8086:cfe', '8086:11fb', '8086:1212', '8086:1216',
      '8086:4940', '8086:4942', '8086:4944', '8086:4946', '8086:4948']);
    expect(ids('7.1')).toEqual(['1ae0:ANY']);
    expect(ids('queued')).toEqual(['10de:2f95', '10de:2f96', '10de:2f97', '10de:2f98',
      '1d17:1003/same', '1d17:1005/same', '1d17:1006/same', '1d17:1007/same', '1d17:1008']);
    expect(PCI_P2PDMA_WHITELIST.length).toBe(30);
  });
});

describe('map type and distance: the cases calc_map_type_and_dist() documents', () => {
  it('the switch case: gpu0 and nvme0 behind one switch are BUS_ADDR at distance 4', () => {
    const { d } = build(example());
    const provider = pcimP2pdmaProvider(d('gpu0'), 0)!;
    expect(provider.owner).toBe(d('gpu0'));
    expect(pciP2pdmaMapType(provider, d('nvme0'))).toBe(PCI_P2PDMA_MAP_BUS_ADDR);
    expect(pciP2pdmaDistance(d('gpu0'), d('nvme0'))).toBe(4);
    expect(pciP2pdmaDistance(d('nvme0'), d('gpu0'))).toBe(4);
  });

  it('same function: BUS_ADDR, distance 0; two functions of one device: BUS_ADDR, distance 2', () => {
    const n = example();
    n[4].functions = 2;
    const { d } = build(n);
    expect(calcMapTypeAndDist(d('gpu0'), d('gpu0'))).toEqual({ mapType: PCI_P2PDMA_MAP_BUS_ADDR, dist: 0 });
    expect(calcMapTypeAndDist(d('gpu0'), d('gpu0.1'))).toEqual({ mapType: PCI_P2PDMA_MAP_BUS_ADDR, dist: 2 });
    expect(pciP2pdmaDistance(d('gpu0.1'), d('gpu0'))).toBe(2);
  });

  it('through the host bridge the hop count is kept: whitelisted root complex gives THRU_HOST_BRIDGE', () => {
    const { d } = build(example());
    // gpu0 -> sw0.dsp1 -> sw0 -> rp0 (4) and tb0 -> rp1 (2): no common upstream bridge.
    expect(calcMapTypeAndDist(d('gpu0'), d('tb0'))).toEqual({ mapType: PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, dist: 6 });
    expect(pciP2pdmaDistance(d('gpu0'), d('tb0'))).toBe(6);
    expect(pciP2pdmaMapType(pcimP2pdmaProvider(d('gpu0'), 0)!, d('tb0'))).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
  });

  it('an unlisted root complex on an Intel CPU is NOT_SUPPORTED (distance -1)', () => {
    const { d, mm } = build(example(NOT_WHITELISTED));
    expect(calcMapTypeAndDist(d('gpu0'), d('tb0')).mapType).toBe(PCI_P2PDMA_MAP_NOT_SUPPORTED);
    expect(pciP2pdmaDistance(d('gpu0'), d('tb0'))).toBe(-1);
    const before = mm.events.total;
    expect(pciP2pdmaMapType(pcimP2pdmaProvider(d('gpu0'), 0)!, d('tb0'))).toBe(PCI_P2PDMA_MAP_NOT_SUPPORTED);
    // The cached result is returned without a new diagnosis.
    expect(mm.events.total).toBe(before);
    // Switch-local P2P does not need the root complex.
    expect(pciP2pdmaDistance(d('gpu0'), d('nvme0'))).toBe(4);
  });

  it('AMD family >= 0x17 (Zen) routes through the root complex; older AMD does not', () => {
    for (const [family, want] of [[0x15, PCI_P2PDMA_MAP_NOT_SUPPORTED], [0x16, PCI_P2PDMA_MAP_NOT_SUPPORTED],
      [0x17, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE], [0x19, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE], [0x1a, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE]]) {
      const { d } = build(example(NOT_WHITELISTED), { vendor: 'amd', family });
      expect(calcMapTypeAndDist(d('gpu0'), d('tb0')), `family 0x${family.toString(16)}`).toEqual({ mapType: want, dist: 6 });
    }
    expect(cpuSupportsP2pdma({ vendor: 'intel', family: 0x19 })).toBe(false);
    expect(cpuSupportsP2pdma({ vendor: 'other' })).toBe(false);
    expect(cpuSupportsP2pdma({ vendor: 'amd', family: 0x17 })).toBe(true);
    // without a family, the machine's default for AMD (0x19) applies, as buildPciTopology gives it
    expect(cpuSupportsP2pdma({ vendor: 'amd' })).toBe(true);
    expect(build(example(NOT_WHITELISTED), { vendor: 'amd' }).topo.cpu.family).toBe(0x19);
  });
});

describe('ACS redirect', () => {
  it('on the switch ports forces THRU_HOST_BRIDGE, keeps the distance and explains with pci=disable_acs_redir', () => {
    const { d, mm } = build(example(undefined, true));
    const provider = pcimP2pdmaProvider(d('gpu0'), 0)!;
    expect(pciP2pdmaMapType(provider, d('nvme0'))).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
    expect(calcMapTypeAndDist(d('gpu0'), d('nvme0')).dist).toBe(4);
    const ev = mm.events.list('INFO', 'pci-p2pdma');
    expect(ev).toHaveLength(1);
    expect(ev[0].data?.param).toBe('pci=disable_acs_redir=0000:02:01.0;0000:02:00.0');
    expect(ev[0].data?.acsPorts).toEqual(['sw0.dsp1', 'sw0.dsp0']);
  });

  it('on one port anywhere on either side of the path counts; above the common bridge it does not', () => {
    const base = (): PciNodeConfig[] => [
      { name: 'hb', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp', type: 'root-port', parent: 'hb' },
      { name: 'top', type: 'switch', parent: 'rp' },
      { name: 'left', type: 'switch', parent: 'top' },
      { name: 'right', type: 'switch', parent: 'top' },
      { name: 'p', type: 'endpoint', parent: 'left', bars: [{ bytes: 4096, p2p: true }] },
      { name: 'c', type: 'endpoint', parent: 'right' },
    ];
    const { d: d0 } = build(base());
    // p, left.dsp0, left, top.dsp0, top | right, right.dsp0, c... -> c walk: c, right.dsp0, right, top.dsp1, top
    expect(calcMapTypeAndDist(d0('p'), d0('c'))).toEqual({ mapType: PCI_P2PDMA_MAP_BUS_ADDR, dist: 8 });
    const where: Array<[string, (n: PciNodeConfig[]) => void, number]> = [
      ['provider-side leaf port', (n) => (n[3].acsRedirect = true), PCI_P2PDMA_MAP_THRU_HOST_BRIDGE],
      ['client-side leaf port', (n) => (n[4].acsRedirectPorts = ['c']), PCI_P2PDMA_MAP_THRU_HOST_BRIDGE],
      ['client-side top port', (n) => (n[2].acsRedirectPorts = ['right']), PCI_P2PDMA_MAP_THRU_HOST_BRIDGE],
      ['provider-side top port', (n) => (n[2].acsRedirectPorts = ['left']), PCI_P2PDMA_MAP_THRU_HOST_BRIDGE],
      ['provider endpoint ACS capability', (n) => (n[5].acsRedirect = true), PCI_P2PDMA_MAP_THRU_HOST_BRIDGE],
      ['client endpoint ACS capability', (n) => (n[6].acsRedirect = true), PCI_P2PDMA_MAP_THRU_HOST_BRIDGE],
      ['root port above the common bridge', (n) => (n[1].acsRedirect = true), PCI_P2PDMA_MAP_BUS_ADDR],
    ];
    for (const [what, mutate, want] of where) {
      const n = base();
      mutate(n);
      const { d } = build(n);
      expect(calcMapTypeAndDist(d('p'), d('c')), what).toEqual({ mapType: want, dist: 8 });
      expect(calcMapTypeAndDist(d('c'), d('p')), `${what} (reversed)`).toEqual({ mapType: want, dist: 8 });
    }
  });

  it('on the common bridge itself counts (two devices directly on an ACS root port)', () => {
    const { d } = build([
      { name: 'hb', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp', type: 'root-port', parent: 'hb', acsRedirect: true },
      { name: 'a', type: 'endpoint', parent: 'rp', functions: 2 },
    ]);
    expect(calcMapTypeAndDist(d('a'), d('a.1'))).toEqual({ mapType: PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, dist: 2 });
  });

  it('with an unlisted root complex gives NOT_SUPPORTED and reports the host bridge', () => {
    const { d, mm } = build(example(NOT_WHITELISTED, true));
    expect(pciP2pdmaMapType(pcimP2pdmaProvider(d('gpu0'), 0)!, d('nvme0'))).toBe(PCI_P2PDMA_MAP_NOT_SUPPORTED);
    const msgs = mm.events.list('INFO', 'pci-p2pdma').map((e) => e.message);
    expect(msgs).toHaveLength(3);
    expect(msgs[1]).toMatch(/host bridge 1022:1480 is not in the P2PDMA whitelist/);
    expect(msgs[2]).toMatch(/no peer-to-peer DMA with provider/);
  });

  it('without verbose only the whitelist miss is reported (the kernel passes acs_redirects as its warn flag)', () => {
    const { d, mm } = build(example(NOT_WHITELISTED, true));
    expect(pciP2pdmaDistance(d('gpu0'), d('nvme0'))).toBe(-1);
    expect(mm.events.list().map((e) => e.message)).toEqual([expect.stringMatching(/not in the P2PDMA whitelist/)]);
  });
});

describe('host bridge whitelist with two host bridges', () => {
  const twoBridges = (a: number, b: number, vendorB = 0x8086): PciNodeConfig[] => [
    { name: 'hbA', type: 'host-bridge', vendor: 0x8086, device: a },
    { name: 'hbB', type: 'host-bridge', vendor: vendorB, device: b },
    { name: 'rpA', type: 'root-port', parent: 'hbA' },
    { name: 'rpA2', type: 'root-port', parent: 'hbA' },
    { name: 'rpB', type: 'root-port', parent: 'hbB' },
    { name: 'x', type: 'endpoint', parent: 'rpA', bars: [{ bytes: 4096, p2p: true }] },
    { name: 'x2', type: 'endpoint', parent: 'rpA2' },
    { name: 'y', type: 'endpoint', parent: 'rpB' },
  ];
  const table: Array<[number, number, number, boolean, boolean]> = [
    // deviceA, deviceB, vendorB, same-bridge pair allowed, cross-bridge pair allowed
    [0x2030, 0x2031, 0x8086, true, true],
    [0x09a2, 0x2020, 0x8086, true, true],
    [0x3c00, 0x2030, 0x8086, true, false],
    [0x2030, 0x2f01, 0x8086, true, false],
    [0x3c01, 0x3c01, 0x8086, true, false],
    [0x2030, 0x2030, 0x10de, true, false],
    [0x1234, 0x2030, 0x8086, false, false],
    // 7.1.5 Intel accelerator root devices (QAT 4xxx, DSA, IAA): listed without REQ_SAME_HOST_BRIDGE.
    [0x4940, 0x0b25, 0x8086, true, true],
    [0x1216, 0x3c00, 0x8086, true, false],
  ];
  it.each(table)('hbA %s, hbB %s (vendor %s)', (a, b, vb, same, cross) => {
    const { d } = build(twoBridges(a, b, vb));
    expect(hostBridgeWhitelist(d('x'), d('x2'))).toBe(same);
    expect(hostBridgeWhitelist(d('x'), d('y'))).toBe(cross);
    expect(hostBridgeWhitelist(d('y'), d('x'))).toBe(cross);
    const p = pcimP2pdmaProvider(d('x'), 0)!;
    expect(pciP2pdmaMapType(p, d('x2'))).toBe(same ? PCI_P2PDMA_MAP_THRU_HOST_BRIDGE : PCI_P2PDMA_MAP_NOT_SUPPORTED);
    expect(pciP2pdmaMapType(p, d('y'))).toBe(cross ? PCI_P2PDMA_MAP_THRU_HOST_BRIDGE : PCI_P2PDMA_MAP_NOT_SUPPORTED);
    expect(pciP2pdmaDistance(d('x'), d('y'))).toBe(cross ? 4 : -1);
  });
});

describe('whitelist wildcards and same-host-bridge entries (Linux 7.1 "Google SoCs", queued NVIDIA/Zhaoxin)', () => {
  const twoVendors = (va: number, a: number, vb: number, b: number): PciNodeConfig[] => [
    { name: 'hbA', type: 'host-bridge', vendor: va, device: a },
    { name: 'hbB', type: 'host-bridge', vendor: vb, device: b },
    { name: 'rpA', type: 'root-port', parent: 'hbA' },
    { name: 'rpA2', type: 'root-port', parent: 'hbA' },
    { name: 'rpB', type: 'root-port', parent: 'hbB' },
    { name: 'x', type: 'endpoint', parent: 'rpA', bars: [{ bytes: 4096, p2p: true }] },
    { name: 'x2', type: 'endpoint', parent: 'rpA2' },
    { name: 'y', type: 'endpoint', parent: 'rpB' },
  ];

  it('an Intel CPU with host bridge 1ae0:0001 gets THRU_HOST_BRIDGE, not NOT_SUPPORTED (exact-id match cannot express PCI_ANY_ID)', () => {
    const { d, mm } = build(example({ vendor: 0x1ae0, device: 0x0001 }));
    expect(calcMapTypeAndDist(d('gpu0'), d('tb0'), true)).toEqual({ mapType: PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, dist: 6 });
    expect(pciP2pdmaDistance(d('gpu0'), d('tb0'))).toBe(6);
    expect(mm.events.list().filter((e) => /whitelist/.test(e.message))).toEqual([]);
  });

  it.each([0x0000, 0x0001, 0x00ff, 0xabcd, 0xffff])('the Google wildcard matches device %s on one and on two host bridges', (dev) => {
    const { d } = build(twoVendors(0x1ae0, dev, 0x1ae0, 0x1234));
    expect(hostBridgeWhitelist(d('x'), d('x2'))).toBe(true);
    expect(hostBridgeWhitelist(d('x'), d('y'))).toBe(true);
  });

  it('the wildcard is per vendor: 1ae1:0001 and 8086:1ae0 are not whitelisted', () => {
    for (const [vendor, device] of [[0x1ae1, 0x0001], [0x8086, 0x1ae0]]) {
      const { d } = build(example({ vendor, device }));
      expect(calcMapTypeAndDist(d('gpu0'), d('tb0')).mapType).toBe(PCI_P2PDMA_MAP_NOT_SUPPORTED);
    }
  });

  it('Zhaoxin 1003/1005/1006/1007 are same-host-bridge only, 1008 is not (queued entries)', () => {
    for (const dev of [0x1003, 0x1005, 0x1006, 0x1007, 0x1008]) {
      const { d } = build(twoVendors(0x1d17, dev, 0x1ae0, 0x0001));
      const p = pcimP2pdmaProvider(d('x'), 0)!;
      expect(pciP2pdmaMapType(p, d('x2')), `1d17:${dev.toString(16)} same bridge`).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
      expect(pciP2pdmaMapType(p, d('y')), `1d17:${dev.toString(16)} cross bridge`)
        .toBe(dev === 0x1008 ? PCI_P2PDMA_MAP_THRU_HOST_BRIDGE : PCI_P2PDMA_MAP_NOT_SUPPORTED);
    }
  });

  it('NVIDIA CPU root complexes 2f95..2f98 pass across host bridges; 10de:2f99 does not', () => {
    const { d } = build(twoVendors(0x10de, 0x2f95, 0x10de, 0x2f98));
    expect(hostBridgeWhitelist(d('x'), d('y'))).toBe(true);
    const { d: d2 } = build(twoVendors(0x10de, 0x2f99, 0x10de, 0x2f98));
    expect(hostBridgeWhitelist(d2('x'), d2('y'))).toBe(false);
  });
});

describe('map-type cache', () => {
  it('counts lookups and hits; a distance query fills the cache; the cache is per owning function', () => {
    const { d, mm } = build(example());
    const p = pcimP2pdmaProvider(d('gpu0'), 0)!;
    expect(pciP2pdmaMapType(p, d('nvme0'))).toBe(PCI_P2PDMA_MAP_BUS_ADDR);
    expect([mm.stats.p2pMapTypeLookups, mm.stats.p2pMapTypeCacheHits]).toEqual([1, 0]);
    expect(pciP2pdmaMapType(p, d('nvme0'))).toBe(PCI_P2PDMA_MAP_BUS_ADDR);
    expect([mm.stats.p2pMapTypeLookups, mm.stats.p2pMapTypeCacheHits]).toEqual([2, 1]);
    pciP2pdmaDistance(d('gpu0'), d('tb0'));
    expect(pciP2pdmaMapType(p, d('tb0'))).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
    expect([mm.stats.p2pMapTypeLookups, mm.stats.p2pMapTypeCacheHits]).toEqual([3, 2]);
    // Like the kernel's xarray, a cached type survives a later ACS change until recomputed.
    toPciDev(d('sw0.dsp0')).acsRedirect = true;
    expect(pciP2pdmaMapType(p, d('nvme0'))).toBe(PCI_P2PDMA_MAP_BUS_ADDR);
    expect(calcMapTypeAndDist(d('gpu0'), d('nvme0')).mapType).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
    expect(pciP2pdmaMapType(p, d('nvme0'))).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
  });

  it('a non-PCI client or an owner without P2PDMA state is NOT_SUPPORTED', () => {
    const { d } = build(example());
    const p = pcimP2pdmaProvider(d('gpu0'), 0)!;
    expect(pciP2pdmaMapType(p, new Device('platform0'))).toBe(PCI_P2PDMA_MAP_NOT_SUPPORTED);
    toPciDev(d('gpu0')).p2pdma = null;
    expect(pciP2pdmaMapType(p, d('nvme0'))).toBe(PCI_P2PDMA_MAP_NOT_SUPPORTED);
    expect(() => pciP2pdmaMapType(null as never, d('nvme0'))).toThrow(TypeError);
  });
});

describe('functions of two machines', () => {
  it('are refused with an error naming both, not given a host-bridge route or another machine\'s cached type', () => {
    const a = build(example(undefined, true));
    const b = build(example());
    const p = pcimP2pdmaProvider(a.d('gpu0'), 0)!;
    // a's cache holds THRU_HOST_BRIDGE (ACS) for its own nvme0 at 0000:03:00.0, the bus/devfn b's nvme0 has too
    expect(pciP2pdmaMapType(p, a.d('nvme0'))).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
    const msg = /client nvme0 must be a PCI function of the same machine as provider owner gpu0/;
    expect(() => pciP2pdmaMapType(p, b.d('nvme0'))).toThrow(msg);
    expect(() => pciP2pdmaMapTypePeek(p, b.d('nvme0'))).toThrow(msg);
    expect(() => calcMapTypeAndDist(a.d('gpu0'), b.d('tb0'))).toThrow(/client tb0 must be a PCI function of the same machine as provider gpu0/);
    expect(() => pciP2pdmaDistance(a.d('gpu0'), b.d('nvme0'))).toThrow(RangeError);
    expect(() => hostBridgeWhitelist(a.d('gpu0'), b.d('tb0'))).toThrow(/b tb0 must be a PCI function of the same machine as a gpu0/);
    expect(toPciDev(a.d('gpu0')).p2pdma!.mapTypes.size).toBe(1);
  });
});

describe('pci_p2pdma_state', () => {
  it('is NONE without a provider, caches per provider, and recomputes when the provider changes', () => {
    const n = example();
    n[3].bars = [{ bytes: 16 * KiB, p2p: true }];
    const { d, mm, topo } = build(n);
    const gpuFlags = toPciDev(d('gpu0')).bars[0].region.rangeFlags;
    const nvmeFlags = toPciDev(d('nvme0')).bars[0].region.rangeFlags;
    expect(providerForRangeFlags(topo, gpuFlags)).toBe(pcimP2pdmaProvider(d('gpu0'), 0));
    expect(providerForRangeFlags(topo, RANGE_DEVICE)).toBeNull();
    const st = new PciP2pdmaMapState();
    expect(st.map).toBe(PCI_P2PDMA_MAP_UNKNOWN);
    expect(pciP2pdmaState(st, d('tb0'), 0)).toBe(PCI_P2PDMA_MAP_NONE);
    expect(st.mem).toBeNull();
    expect(pciP2pdmaState(st, d('tb0'), gpuFlags)).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
    expect(st.mem).toBe(pcimP2pdmaProvider(d('gpu0'), 0));
    expect(mm.stats.p2pMapTypeLookups).toBe(1);
    for (let i = 0; i < 5; i++) pciP2pdmaState(st, d('tb0'), gpuFlags);
    expect(mm.stats.p2pMapTypeLookups).toBe(1);
    expect(pciP2pdmaState(st, d('gpu0'), nvmeFlags)).toBe(PCI_P2PDMA_MAP_BUS_ADDR);
    expect(mm.stats.p2pMapTypeLookups).toBe(2);
    expect(pciP2pdmaState(st, new Device('plat'), gpuFlags)).toBe(PCI_P2PDMA_MAP_NOT_SUPPORTED);
    expect(() => pciP2pdmaState(st, d('gpu0'), withProvider(RANGE_DEVICE, 77))).toThrow(/provider id 77/);
    expect(() => pciP2pdmaState(st, d('gpu0'), -1)).toThrow(/rangeFlags/);
  });
});

describe('bus offset', () => {
  it('bus address = CPU physical + busOffset, in u64 arithmetic', () => {
    const n = example();
    n[4].bars = [{ bytes: 16 * GiB, p2p: true, busOffset: -(0x4_0000_0000n) }, { bytes: 8192, busOffset: 0x1000n }];
    const { d } = build(n);
    const gpu = d('gpu0');
    const start = pciResourceStart(gpu, 0);
    expect(pciBusAddress(gpu, 0)).toBe(start - 0x4_0000_0000n);
    const p = pcimP2pdmaProvider(gpu, 0)!;
    expect(p.busOffset).toBe(-(0x4_0000_0000n));
    expect(pciP2pdmaBusAddrMap(p, start + 0x1234n)).toBe(start + 0x1234n - 0x4_0000_0000n);
    // Outside the BAR the arithmetic still wraps at 2^64, as u64 addition does.
    expect(pciP2pdmaBusAddrMap(p, 0x10n)).toBe((1n << 64n) + 0x10n - 0x4_0000_0000n);
    const p1 = pcimP2pdmaProvider(gpu, 1)!;
    expect(p1.id).toBe(2);
    expect(pciP2pdmaBusAddrMap(p1, pciResourceStart(gpu, 1))).toBe(pciResourceStart(gpu, 1) + 0x1000n);
    expect(() => pciP2pdmaBusAddrMap(p, -1n)).toThrow(/paddr/);
    expect(() => pciP2pdmaBusAddrMap(null as never, 0n)).toThrow(/provider/);
  });
});

describe('pcim_p2pdma_init / pcim_p2pdma_provider', () => {
  it('creates one provider per BAR on demand, idempotently, with region provider ids', () => {
    const n = example();
    n[3].bars = [{ bytes: 4096 }, { bytes: 8192 }];
    const { d, mm, topo } = build(n);
    expect(pcimP2pdmaProvider(d('nvme0'), 0)).toBeNull();
    expect(mm.events.count('WARN')).toBe(1);
    expect(pcimP2pdmaInit(d('nvme0'))).toEqual({ ok: true, value: undefined });
    const p0 = pcimP2pdmaProvider(d('nvme0'), 0)!;
    const p1 = pcimP2pdmaProvider(d('nvme0'), 1)!;
    expect([p0.id, p1.id]).toEqual([2, 3]);
    expect(toPciDev(d('nvme0')).bars.map((b) => b.region.providerId)).toEqual([2, 3]);
    expect(pcimP2pdmaInit(d('nvme0')).ok).toBe(true);
    expect(topo.providers()).toHaveLength(3);
    expect(pcimP2pdmaProvider(d('nvme0'), 2)).toBeNull();
    expect(() => pcimP2pdmaProvider(d('nvme0'), 6)).toThrow(RangeError);
    expect(() => pcimP2pdmaProvider(new Device('x'), 0)).toThrow(/dev must be a PCI device/);
    // The new provider classifies against its clients like any other.
    expect(pciP2pdmaMapType(p1, d('gpu0'))).toBe(PCI_P2PDMA_MAP_BUS_ADDR);
  });
});

describe('pci_p2pdma_distance_many', () => {
  it('follows the -1 rules and sums distances', () => {
    const n = example(NOT_WHITELISTED);
    n[3].functions = 2;
    const { d, mm } = build(n);
    const gpu = d('gpu0');
    expect(pciP2pdmaDistanceMany(gpu, [])).toBe(-1);
    expect(pciP2pdmaDistanceMany(gpu, [d('nvme0'), d('nvme0.1'), gpu])).toBe(4 + 4 + 0);
    expect(pciP2pdmaDistanceMany(gpu, [d('nvme0'), new Device('plat')])).toBe(-1);
    expect(pciP2pdmaDistanceMany(gpu, [d('nvme0'), d('tb0'), d('nvme0.1')])).toBe(-1);
    expect(mm.events.total).toBe(0);
    // Verbose reports every unsupported client, not only the first.
    const n2 = example(NOT_WHITELISTED);
    n2.push({ name: 'tb1', type: 'endpoint', parent: 'rp1' });
    const b = build(n2);
    expect(pciP2pdmaDistanceMany(b.d('gpu0'), [b.d('tb0'), b.d('tb1')], true)).toBe(-1);
    expect(b.mm.events.list('INFO').filter((e) => /no peer-to-peer DMA/.test(e.message))).toHaveLength(2);
    expect(() => pciP2pdmaDistanceMany(new Device('x'), [gpu])).toThrow(/provider must be a PCI device/);
  });
});
