// Tests for the PCI topology build: enumeration, names, BAR regions, providers, config validation.
import { describe, expect, it } from 'vitest';
import { GiB, KiB } from '../base/index.ts';
import { rangeProvider } from '../phyr/index.ts';
import { Device, devDriverString, deviceBindDriver, deviceReleaseDriver } from './device.ts';
import { devIsPci, toPciDev } from './pci-dev.ts';
import { buildTestTopology as build, exampleTopology as example, pciTestMachine } from '../../test/fixtures/pci-topology.ts';
import { buildPciTopology, pciDeviceMemoryFromConfig, pciTopologyOf, type PciNodeConfig } from './topology.ts';

describe('pciDeviceMemoryFromConfig', () => {
  it('lists one region per BAR, p2p BARs with pgmap', () => {
    const nodes = example();
    nodes.push({ name: 'nic0', type: 'endpoint', parent: 'rp1', bars: [{ bytes: 4096 }, { bytes: 1 * GiB, p2p: true }] });
    expect(pciDeviceMemoryFromConfig(nodes)).toEqual([
      { name: 'nvme0.bar0', bytes: 16 * KiB, pgmap: false },
      { name: 'gpu0.bar0', bytes: 16 * GiB, pgmap: true },
      { name: 'nic0.bar0', bytes: 4096, pgmap: false },
      { name: 'nic0.bar1', bytes: 1 * GiB, pgmap: true },
    ]);
  });
});

describe('buildPciTopology', () => {
  it('enumerates buses and devfns depth first', () => {
    const { topo } = build(example());
    const names = topo.pciDevs().map((p) => `${p.name}@${p.pciName}`);
    expect(names).toEqual([
      'hb0@0000:00:00.0', 'rp0@0000:00:01.0', 'sw0@0000:01:00.0', 'sw0.dsp0@0000:02:00.0', 'nvme0@0000:03:00.0',
      'sw0.dsp1@0000:02:01.0', 'gpu0@0000:04:00.0', 'rp1@0000:00:02.0', 'tb0@0000:05:00.0',
    ]);
    const up = (n: string) => toPciDev(topo.device(n)).upstream?.name ?? null;
    expect(['nvme0', 'gpu0', 'sw0.dsp0', 'sw0', 'rp0', 'hb0', 'tb0'].map(up)).toEqual(['sw0.dsp0', 'sw0.dsp1', 'sw0', 'rp0', null, null, 'rp1']);
    expect(topo.devices().map((d) => d.name)).toEqual(['nvme0', 'gpu0', 'tb0']);
    expect(topo.allDevices()).toHaveLength(9);
    expect(topo.lspci()[6]).toMatch(/^0000:04:00\.0 gpu0 endpoint 0000:0000 <- sw0\.dsp1 bar0=gpu0\.bar0\(p2p#1\)$/);
  });

  it('names every function by its address (dev_name) and its bus (dev_driver_string without a driver)', () => {
    // drivers/pci/probe.c: pci_scan_child_bus_extend() finds the devices of a bus slot by slot, then
    // pci_scan_bridge_extend() gives each bridge in turn the next bus number (max + 1) as its
    // secondary bus and scans below it before the next bridge: depth first. pci_setup_device()
    // names each function "%04x:%02x:%02x.%d" (domain, bus, PCI_SLOT, PCI_FUNC).
    const { topo } = build([
      { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp0', type: 'root-port', parent: 'hb0' },
      { name: 'sw0', type: 'switch', parent: 'rp0' },
      { name: 'ep0', type: 'endpoint', parent: 'sw0', functions: 2 },
      { name: 'ep1', type: 'endpoint', parent: 'sw0' },
      { name: 'rp1', type: 'root-port', parent: 'hb0' },
      { name: 'ep2', type: 'endpoint', parent: 'rp1' },
    ]);
    expect(topo.allDevices().map((d) => `${d.name} ${d.devName}`)).toEqual([
      'hb0 0000:00:00.0', // the host bridge's root device, slot 0 of root bus 00
      'rp0 0000:00:01.0', // root ports from slot 1
      'sw0 0000:01:00.0', // rp0's secondary bus: 01
      'sw0.dsp0 0000:02:00.0', // the switch's internal bus: 02, one downstream port per slot
      'ep0 0000:03:00.0', // dsp0's secondary bus: 03, taken before dsp1's
      'ep0.1 0000:03:00.1',
      'sw0.dsp1 0000:02:01.0',
      'ep1 0000:04:00.0',
      'rp1 0000:00:02.0',
      'ep2 0000:05:00.0', // after everything below rp0 (subordinate 04)
    ]);
    for (const d of topo.allDevices()) {
      expect(d.busName).toBe('pci');
      expect(d.driver).toBeNull();
      expect(devDriverString(d)).toBe('pci');
      expect(d.devName).toBe(toPciDev(d).pciName);
    }
  });

  it('puts root-complex endpoints and slotted root ports on the root bus, numbering buses in slot order', () => {
    const { topo } = build([
      { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x29c0 },
      { name: 'rp0', type: 'root-port', parent: 'hb0', slot: 3 },
      { name: 'ep0', type: 'endpoint', parent: 'rp0' },
      { name: 'edu', type: 'endpoint', parent: 'hb0', slot: 0x10 },
      { name: 'rp1', type: 'root-port', parent: 'hb0' },
      { name: 'ep1', type: 'endpoint', parent: 'rp1' },
    ]);
    // rp1 takes the lowest free slot (1); the root bus is scanned slot by slot, so rp1's bus is 01
    expect(topo.allDevices().map((d) => `${d.name} ${d.devName}`)).toEqual([
      'hb0 0000:00:00.0', 'rp1 0000:00:01.0', 'ep1 0000:01:00.0', 'rp0 0000:00:03.0', 'ep0 0000:02:00.0', 'edu 0000:00:10.0',
    ]);
    expect(toPciDev(topo.device('edu')).upstream).toBeNull();
    expect(topo.device('edu').untrusted).toBe(false);
  });

  it('binds and releases a driver: dev_driver_string() is its name while bound; a second driver does not take the device', () => {
    const { d } = build(example());
    const nvme = d('nvme0');
    expect(deviceBindDriver(nvme, 'nvme')).toBe(true);
    expect(devDriverString(nvme)).toBe('nvme');
    expect(deviceBindDriver(nvme, 'vfio-pci')).toBe(false);
    expect(nvme.driver).toBe('nvme');
    deviceReleaseDriver(nvme, 'vfio-pci');
    expect(nvme.driver).toBe('nvme');
    deviceReleaseDriver(nvme, 'nvme');
    expect(devDriverString(nvme)).toBe('pci');
    deviceBindDriver(nvme, 'vfio-pci');
    deviceReleaseDriver(nvme);
    expect(nvme.driver).toBeNull();
    // a device built outside the topology is a platform device named by its short name
    const plat = new Device('dmac0');
    expect([plat.devName, plat.busName, devDriverString(plat)]).toEqual(['dmac0', 'platform', 'platform']);
  });

  it('fills dev.pci, untrusted, BAR regions and creates providers for p2p BARs only', () => {
    const { mm, topo } = build(example());
    const gpu = topo.device('gpu0');
    expect(gpu).toBeInstanceOf(Device);
    expect(devIsPci(gpu)).toBe(true);
    const pg = toPciDev(gpu);
    expect(pg.bars).toHaveLength(1);
    expect(pg.bars[0].region.name).toBe('gpu0.bar0');
    expect(pg.bars[0].busOffset).toBe(0n);
    expect(pg.bars[0].region.providerId).toBe(1);
    expect(rangeProvider(pg.bars[0].region.rangeFlags)).toBe(1);
    expect(topo.providerById(1)?.owner).toBe(gpu);
    expect(topo.providerById(2)).toBeNull();
    expect(toPciDev(topo.device('nvme0')).p2pdma).toBeNull();
    expect(mm.regions.find((r) => r.name === 'nvme0.bar0')?.providerId).toBe(0);
    expect(topo.device('tb0').untrusted).toBe(true);
    expect(topo.device('nvme0').untrusted).toBe(false);
    expect(pciTopologyOf(mm)).toBe(topo);
    expect(() => topo.device('nope')).toThrow(/name must be a PCI function.*"nope"/);
  });

  it('names extra functions and shares their upstream port', () => {
    const { topo } = build([
      { name: 'hb', type: 'host-bridge', vendor: 1, device: 2 },
      { name: 'rp', type: 'root-port', parent: 'hb', externalFacing: true },
      { name: 'sw', type: 'switch', parent: 'rp' },
      { name: 'mf', type: 'endpoint', parent: 'sw', functions: 3 },
    ]);
    expect(['mf', 'mf.1', 'mf.2'].map((n) => toPciDev(topo.device(n)).pciName)).toEqual(['0000:03:00.0', '0000:03:00.1', '0000:03:00.2']);
    expect(new Set(['mf', 'mf.1', 'mf.2'].map((n) => toPciDev(topo.device(n)).upstream)).size).toBe(1);
  });

  it('marks untrusted what x86 calls tunneled below an external-facing root port (set_pcie_untrusted, arch_pci_dev_is_removable)', () => {
    // A discrete Thunderbolt controller (switch tbc) below the external port: the controller's own ports
    // and the endpoints on them (nhi, with 3 functions) are internal; behind a second switch (dock) and
    // directly below the root port everything is tunneled; an untrusted bridge makes all below it untrusted.
    const nodes = (rpDevice: number): PciNodeConfig[] => [
      { name: 'hb', type: 'host-bridge', vendor: 1, device: 2 },
      { name: 'rp', type: 'root-port', parent: 'hb', externalFacing: true, vendor: 0x8086, device: rpDevice },
      { name: 'tbc', type: 'switch', parent: 'rp' },
      { name: 'nhi', type: 'endpoint', parent: 'tbc', functions: 3 },
      { name: 'dock', type: 'switch', parent: 'tbc' },
      { name: 'disk', type: 'endpoint', parent: 'dock' },
      { name: 'rp2', type: 'root-port', parent: 'hb', externalFacing: true },
      { name: 'egpu', type: 'endpoint', parent: 'rp2' },
      { name: 'rp3', type: 'root-port', parent: 'hb' },
      { name: 'sw3', type: 'switch', parent: 'rp3' },
      { name: 'int', type: 'endpoint', parent: 'sw3' },
    ];
    const untrusted = (rpDevice: number) => build(nodes(rpDevice)).topo.pciDevs().filter((p) => p.device.untrusted).map((p) => p.name);
    // Not an integrated Thunderbolt root port: only what the discrete controller tunnels.
    expect(untrusted(0x1234)).toEqual(['dock', 'dock.dsp0', 'disk', 'egpu']);
    // Tiger Lake-LP Thunderbolt 4 root port (a USB4 host interface by id): everything below it.
    expect(untrusted(0x9a23)).toEqual(['tbc', 'tbc.dsp0', 'nhi', 'nhi.1', 'nhi.2', 'tbc.dsp1', 'dock', 'dock.dsp0', 'disk', 'egpu']);
  });

  it('honours busOffset and per-port ACS settings', () => {
    const { topo } = build([
      { name: 'hb', type: 'host-bridge', vendor: 1, device: 2 },
      { name: 'rp', type: 'root-port', parent: 'hb', acsRedirect: true },
      { name: 'sw', type: 'switch', parent: 'rp', acsRedirectPorts: ['b'] },
      { name: 'a', type: 'endpoint', parent: 'sw', bars: [{ bytes: 8192, p2p: true, busOffset: -(1n << 30n) }] },
      { name: 'b', type: 'endpoint', parent: 'sw', acsRedirect: true },
    ]);
    const acs = topo.pciDevs().filter((p) => p.acsRedirect).map((p) => p.name);
    expect(acs).toEqual(['rp', 'sw.dsp1', 'b']);
    expect(toPciDev(topo.device('a')).bars[0].busOffset).toBe(-(1n << 30n));
  });

  it('rejects invalid configs with the node and field in the message', () => {
    const cases: Array<[string, (n: PciNodeConfig[]) => unknown, RegExp]> = [
      ['duplicate', (n) => n.push({ name: 'gpu0', type: 'endpoint', parent: 'rp1' }), /pci\[7\] \(gpu0\)\.name duplicates/],
      ['unknown parent', (n) => (n[3].parent = 'swX'), /\(nvme0\)\.parent names no node, got "swX"/],
      ['endpoint its own parent', (n) => (n[3].parent = 'nvme0'), /\(nvme0\)\.parent names the node itself/],
      ['endpoint below an endpoint', (n) => (n[3].parent = 'tb0'), /\(nvme0\)\.parent must be a host-bridge or root-port or switch, not a endpoint/],
      ['slot below a root port', (n) => (n[6].slot = 3), /\(tb0\)\.slot is only for a child of a host bridge/],
      ['slot 0', (n) => (n[5].slot = 0), /\(rp1\)\.slot must be an integer in \[1, 31\], got 0/],
      ['slot taken', (n) => { n[1].slot = 4; n[5].slot = 4; }, /\(rp1\)\.slot is the slot of rp0 already, got 4/],
      ['root port on switch', (n) => (n[5].parent = 'sw0'), /\(rp1\)\.parent must be a host-bridge/],
      ['host bridge with parent', (n) => (n[0].parent = 'rp0'), /\(hb0\)\.parent must be absent/],
      ['bad type', (n) => ((n[2] as { type: string }).type = 'bridge'), /\(sw0\)\.type must be one of/],
      ['unknown field', (n) => ((n[4] as unknown as Record<string, unknown>).bar = []), /\(gpu0\)\.bar is not a field of a endpoint node/],
      ['field of another type', (n) => (n[1].functions = 2), /\(rp0\)\.functions is not a field of a root-port/],
      ['bar size', (n) => (n[3].bars = [{ bytes: 3000 }]), /\(nvme0\)\.bars\[0\]\.bytes must be a power of two >= 4096, got 3000/],
      ['functions', (n) => (n[3].functions = 9), /\(nvme0\)\.functions must be an integer in \[1, 8\], got 9/],
      ['host bridge ids', (n) => delete n[0].vendor, /\(hb0\)\.vendor is required/],
      ['acs ports', (n) => (n[2].acsRedirectPorts = ['tb0']), /\(sw0\)\.acsRedirectPorts must name children of sw0, got "tb0"/],
      ['missing parent', (n) => delete n[6].parent, /\(tb0\)\.parent is required/],
    ];
    for (const [what, mutate, re] of cases) {
      const n = example();
      mutate(n);
      expect(() => pciDeviceMemoryFromConfig(n), what).toThrow(RangeError);
      expect(() => pciDeviceMemoryFromConfig(n), what).toThrow(re);
    }
  });

  it('rejects a cycle of switches', () => {
    const n = example();
    n.push({ name: 'swA', type: 'switch', parent: 'swB' }, { name: 'swB', type: 'switch', parent: 'swA' });
    expect(() => pciDeviceMemoryFromConfig(n)).toThrow(/\(swA\)\.parent forms a cycle/);
  });

  it('rejects BARs the machine does not have, of the wrong size, or pushed out of 64 bits', () => {
    const n = example();
    expect(() => buildPciTopology(pciTestMachine([]), n, { vendor: 'intel' })).toThrow(/bars\[0\]: the machine has no memory region "nvme0\.bar0"/);
    const wrong = pciDeviceMemoryFromConfig(n).map((d) => ({ ...d, bytes: d.bytes * 2 }));
    expect(() => buildPciTopology(pciTestMachine(wrong), n, { vendor: 'intel' })).toThrow(/must be a device region of 16384 bytes/);
    n[3].bars = [{ bytes: 16 * KiB, busOffset: -(1n << 63n) }];
    expect(() => build(n)).toThrow(/\(nvme0\)\.bars\[0\]\.busOffset moves the BAR outside/);
  });

  it('rejects a bad cpu config and a second topology on one machine', () => {
    const n = example();
    const mm = pciTestMachine(pciDeviceMemoryFromConfig(n));
    expect(() => buildPciTopology(mm, n, { vendor: 'via' as 'intel' })).toThrow(/cpu\.vendor must be one of/);
    expect(() => buildPciTopology(mm, n, { vendor: 'amd', family: -1 })).toThrow(/cpu\.family must be an integer/);
    // the family is a u8 in the kernel (cpuinfo_x86.x86): 0x100 cannot be a CPU
    expect(() => buildPciTopology(mm, n, { vendor: 'amd', family: 0x100 })).toThrow(/cpu\.family must be an integer in \[0, 0xff\]/);
    buildPciTopology(mm, n, { vendor: 'amd' });
    expect(() => buildPciTopology(mm, n, { vendor: 'amd' })).toThrow(/already has a PCI topology/);
  });

  it('fails cleanly when a bus runs out of slots', () => {
    const n: PciNodeConfig[] = [{ name: 'hb', type: 'host-bridge', vendor: 1, device: 1 }, { name: 'rp', type: 'root-port', parent: 'hb' }];
    for (let i = 0; i < 33; i++) n.push({ name: `e${i}`, type: 'endpoint', parent: 'rp' });
    expect(() => build(n)).toThrow(/more than 32 devices on one bus, got 33/);
  });
});
