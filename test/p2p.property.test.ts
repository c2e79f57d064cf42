// Property tests for P2PDMA classification (drivers/pci/p2pdma.c: calc_map_type_and_dist()) over
// random PCI trees: the model's map
// type and distance against a brute-force reference written independently of it. The reference
// derives every function's root path (with ACS flags) from the generated tree shape, finds the
// lowest common ancestor by set lookup, and applies the whitelist and CPU rules from the
// reference's tables — it never looks at the model's PciDev objects.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildTestTopology } from './fixtures/pci-topology.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NOT_SUPPORTED, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE,
  calcMapTypeAndDist, pciP2pdmaDistance, pciP2pdmaDistanceMany, pciP2pdmaMapType,
  pcimP2pdmaProvider, toPciDev, type CpuConfig, type PciNodeConfig,
} from '../src/pci/internal.ts';

type Sub =
  | { kind: 'ep'; functions: number; acs: boolean }
  | { kind: 'sw'; acs: boolean; acsPorts: boolean[]; children: Sub[] };
interface RootPort { acs: boolean; children: Sub[] }
interface HostBridge { device: number; rps: RootPort[] }
interface Shape { hbs: HostBridge[]; cpu: CpuConfig }

// Host bridge ids: listed without flags, listed with REQ_SAME_HOST_BRIDGE, not listed.
const ANY_BRIDGE = new Set([0x2030, 0x2031, 0x2032, 0x2033, 0x2020, 0x09a2]);
const SAME_BRIDGE_ONLY = new Set([0x3c00, 0x3c01, 0x2f00, 0x2f01]);
const HB_IDS = [0x2030, 0x09a2, 0x3c00, 0x2f01, 0x1234, 0x6f00];

const subArb = fc.letrec<{ sub: Sub }>((tie) => ({
  sub: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ kind: fc.constant('ep' as const), functions: fc.integer({ min: 1, max: 3 }), acs: fc.integer({ min: 0, max: 5 }).map((x) => x === 0) }),
    fc.record({
      kind: fc.constant('sw' as const),
      acs: fc.boolean(),
      acsPorts: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      children: fc.array(tie('sub'), { minLength: 0, maxLength: 3 }),
    }),
  ),
})).sub;

const shapeArb: fc.Arbitrary<Shape> = fc.record({
  hbs: fc.array(fc.record({
    device: fc.constantFrom(...HB_IDS),
    rps: fc.array(fc.record({ acs: fc.boolean(), children: fc.array(subArb, { minLength: 1, maxLength: 2 }) }), { minLength: 1, maxLength: 3 }),
  }), { minLength: 1, maxLength: 3 }),
  cpu: fc.constantFrom<CpuConfig>({ vendor: 'intel' }, { vendor: 'amd', family: 0x15 }, { vendor: 'amd', family: 0x17 },
    { vendor: 'amd', family: 0x19 }, { vendor: 'other' }),
});

interface PathEntry { key: string; acs: boolean }
interface Fn { name: string; path: PathEntry[]; hb: string; hbDevice: number; isFn0: boolean }

/** The config for a shape, plus every endpoint function's explicit root path (self first, root port last). */
function lower(shape: Shape): { nodes: PciNodeConfig[]; fns: Fn[] } {
  const nodes: PciNodeConfig[] = [];
  const fns: Fn[] = [];
  let n = 0;
  shape.hbs.forEach((hb) => {
    const hbName = `hb${n++}`;
    nodes.push({ name: hbName, type: 'host-bridge', vendor: 0x8086, device: hb.device });
    const walk = (sub: Sub, parent: string, above: PathEntry[]) => {
      const name = `${sub.kind}${n++}`;
      if (sub.kind === 'ep') {
        nodes.push({ name, type: 'endpoint', parent, functions: sub.functions, acsRedirect: sub.acs, bars: [{ bytes: 4096, p2p: true }] });
        for (let f = 0; f < sub.functions; f++) {
          const fname = f === 0 ? name : `${name}.${f}`;
          fns.push({ name: fname, path: [{ key: fname, acs: sub.acs }, ...above], hb: hbName, hbDevice: hb.device, isFn0: f === 0 });
        }
        return;
      }
      const childNames: string[] = [];
      const ports = sub.children.map((_c, i) => ({ key: `${name}:port${i}`, acs: sub.acs || sub.acsPorts[i] }));
      nodes.push({ name, type: 'switch', parent, acsRedirect: sub.acs, acsRedirectPorts: childNames });
      sub.children.forEach((c, i) => {
        const before = nodes.length;
        walk(c, name, [ports[i], { key: name, acs: false }, ...above]);
        if (sub.acsPorts[i]) childNames.push(nodes[before].name);
      });
    };
    hb.rps.forEach((rp) => {
      const rpName = `rp${n++}`;
      nodes.push({ name: rpName, type: 'root-port', parent: hbName, acsRedirect: rp.acs });
      for (const c of rp.children) walk(c, rpName, [{ key: rpName, acs: rp.acs }]);
    });
  });
  return { nodes, fns };
}

function refWhitelisted(a: Fn, b: Fn): boolean {
  const listed = (id: number) => ANY_BRIDGE.has(id) || SAME_BRIDGE_ONLY.has(id);
  if (a.hb === b.hb) return listed(a.hbDevice);
  return ANY_BRIDGE.has(a.hbDevice) && ANY_BRIDGE.has(b.hbDevice);
}

function reference(a: Fn, b: Fn, cpu: CpuConfig): { mapType: number; dist: number } {
  const posInB = new Map(b.path.map((e, i) => [e.key, i]));
  const ia = a.path.findIndex((e) => posInB.has(e.key));
  let direct = false;
  let dist: number;
  if (ia < 0) {
    dist = a.path.length + b.path.length;
  } else {
    const ib = posInB.get(a.path[ia].key)!;
    dist = ia + ib;
    const acs = a.path.slice(0, ia + 1).some((e) => e.acs) || b.path.slice(0, ib).some((e) => e.acs);
    direct = !acs;
  }
  if (direct) return { mapType: PCI_P2PDMA_MAP_BUS_ADDR, dist };
  const zen = cpu.vendor === 'amd' && (cpu.family ?? 0) >= 0x17;
  return { mapType: zen || refWhitelisted(a, b) ? PCI_P2PDMA_MAP_THRU_HOST_BRIDGE : PCI_P2PDMA_MAP_NOT_SUPPORTED, dist };
}

function build(shape: Shape) {
  const { nodes, fns } = lower(shape);
  return { ...buildTestTopology(nodes, shape.cpu), fns };
}

describe('P2PDMA classification over random PCI trees', () => {
  it('map type and distance equal the brute-force reference for every pair, and are symmetric', () => {
    fc.assert(fc.property(shapeArb, (shape) => {
      const { topo, fns } = build(shape);
      for (const a of fns) {
        for (const b of fns) {
          const want = reference(a, b, shape.cpu);
          const got = calcMapTypeAndDist(topo.device(a.name), topo.device(b.name));
          expect(got, `${a.name} -> ${b.name}`).toEqual(want);
          expect(calcMapTypeAndDist(topo.device(b.name), topo.device(a.name))).toEqual(got);
          expect(pciP2pdmaDistance(topo.device(a.name), topo.device(b.name)))
            .toBe(want.mapType === PCI_P2PDMA_MAP_NOT_SUPPORTED ? -1 : want.dist);
        }
      }
    }), { numRuns: 150 });
  });

  it('pciP2pdmaMapType through each provider agrees with the reference, from a cold and a warm cache', () => {
    fc.assert(fc.property(shapeArb, fc.nat(), (shape, seed) => {
      const { mm, topo, fns } = build(shape);
      const providers = fns.filter((f) => f.isFn0);
      // Visit clients in a seed-dependent order so cache fills interleave differently.
      const order = fns.map((f, i) => ({ f, k: (i * 2654435761 + seed) % 1000003 })).sort((x, y) => x.k - y.k).map((x) => x.f);
      let misses = 0;
      for (const p of providers) {
        const provider = pcimP2pdmaProvider(topo.device(p.name), 0)!;
        for (const c of order) {
          const hitsBefore = mm.stats.p2pMapTypeCacheHits;
          expect(pciP2pdmaMapType(provider, topo.device(c.name))).toBe(reference(p, c, shape.cpu).mapType);
          if (mm.stats.p2pMapTypeCacheHits === hitsBefore) misses++;
          expect(pciP2pdmaMapType(provider, topo.device(c.name))).toBe(reference(p, c, shape.cpu).mapType);
        }
      }
      const pairs = providers.length * fns.length;
      expect(mm.stats.p2pMapTypeLookups).toBe(2 * pairs);
      expect(misses).toBe(pairs);
      expect(mm.stats.p2pMapTypeCacheHits).toBe(pairs);
    }), { numRuns: 60 });
  });

  it('distance_many is -1 when any client is unsupported, else the sum of distances', () => {
    fc.assert(fc.property(shapeArb, fc.array(fc.nat(), { minLength: 0, maxLength: 6 }), fc.nat(), (shape, picks, pi) => {
      const { topo, fns } = build(shape);
      fc.pre(fns.length > 0);
      const p = fns[pi % fns.length];
      const clients = picks.map((k) => fns[k % fns.length]);
      const refs = clients.map((c) => reference(p, c, shape.cpu));
      const want = clients.length === 0 || refs.some((r) => r.mapType === PCI_P2PDMA_MAP_NOT_SUPPORTED)
        ? -1 : refs.reduce((s, r) => s + r.dist, 0);
      const devs = clients.map((c) => topo.device(c.name));
      expect(pciP2pdmaDistanceMany(topo.device(p.name), devs)).toBe(want);
      expect(pciP2pdmaDistanceMany(topo.device(p.name), devs, true)).toBe(want);
    }), { numRuns: 100 });
  });

  it('enumeration gives unique bus/devfn addresses and upstream chains that end at a root port of the right host bridge', () => {
    fc.assert(fc.property(shapeArb, (shape) => {
      const { topo, fns } = build(shape);
      const all = topo.pciDevs();
      expect(new Set(all.map((p) => p.pciName)).size).toBe(all.length);
      for (const f of fns) {
        const chain: string[] = [];
        let last = toPciDev(topo.device(f.name));
        for (let q: typeof last | null = last; q; q = q.upstream) {
          chain.push(q.name);
          last = q;
        }
        expect(last.kind).toBe('root-port');
        expect(last.hostBridge.name).toBe(f.hb);
        expect(chain.length).toBe(f.path.length);
        // Each step up moves to a smaller bus number (depth-first numbering).
        const buses = chain.map((n) => topo.pciDev(n).bus);
        for (let i = 1; i < buses.length; i++) expect(buses[i]).toBeLessThan(buses[i - 1]);
      }
    }), { numRuns: 100 });
  });
});
