#!/usr/bin/env node
// phyr kernel oracle: turns one QEMU serial log of the phyr-oracle driver into a recording (JSON
// lines). Line 1 is the header (kernel version, configuration hashes, QEMU version and command line,
// the boot's memory map, swiotlb pool and IOMMU lines); every further line is one operation as the
// driver printed it, plus "kmsg": the dma-debug / swiotlb / IOMMU / WARNING lines the kernel printed
// while the operation ran (they come before the driver's line on the console).
// Only deterministic text goes into a recording, so re-recording reproduces it byte for byte.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import process from 'node:process';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const sha = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

const lines = readFileSync(args.log, 'latin1').split('\n').map((l) => l.replace(/\r$/, ''));

const e820 = [];
const bootLines = [];
let swiotlb = null;
let edu = null;
const begin = lines.findIndex((l) => l.startsWith('PHYR-ORACLE-BEGIN'));
for (const l of begin < 0 ? lines : lines.slice(0, begin)) {
  let m = /BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]\s+(.*)$/.exec(l);
  if (m) { e820.push([m[1], m[2], m[3]]); continue; }
  m = /software IO TLB: mapped \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] \((\d+)MB\)/.exec(l);
  if (m) { swiotlb = { start: m[1], end: m[2], mb: Number(m[3]) }; continue; }
  m = /^pci (\S+): \[1234:11e8\]/.exec(l);
  if (m) edu = m[1];
  if (/^(DMAR|AMD-Vi|iommu|pci_bus 0000:00: root bus resource|PCI-DMA|DMA: preallocated|dma_debug|DMA-API|software IO TLB)/.test(l) ||
      /Adding to iommu group|IOMMU|phyr-oracle/.test(l)) {
    bootLines.push(l);
  }
}

const header = {
  kind: 'header',
  kernel: args.kernel,
  config: args.name,
  memory: args.memory,
  configSha256: sha(args.config),
  fragmentSha256: sha(args.fragment),
  driverSha256: sha(args.driver),
  // /init (init.sh) and busybox, packed reproducibly: what ran the script
  initramfsSha256: sha(args.initramfs),
  qemuVersion: args['qemu-version'],
  qemu: args.qemu,
  edu,
  e820,
  swiotlb,
  bootLines,
  complete: lines.some((l) => l.startsWith('PHYR-ORACLE-END')),
};
const out = [JSON.stringify(header)];

// Kernel lines worth attaching to an operation.
function keep(l) {
  let m = /^WARNING: CPU: \d+ PID: \d+ at (\S+?):\d+/.exec(l);
  if (m) return `WARNING at ${m[1]}`;
  if (l.includes('DMA-API: ')) return l.slice(l.indexOf('DMA-API: '));
  if (/swiotlb|DMAR|AMD-Vi|iommu|EDU:/i.test(l) && !l.startsWith('PHYR-ORACLE')) return l;
  if (edu && l.includes(edu) && !l.startsWith('PHYR-ORACLE')) return l;
  return null;
}

let pending = [];
let cont = '';
for (const l of begin < 0 ? [] : lines.slice(begin + 1)) {
  if (l.startsWith('PHYR-ORACLE-END')) break;
  if (l.startsWith('PHYR-ORACLE+ ')) { cont += l.slice('PHYR-ORACLE+ '.length); continue; }
  if (l.startsWith('PHYR-ORACLE ')) {
    const op = JSON.parse(cont + l.slice('PHYR-ORACLE '.length));
    cont = '';
    if (pending.length > 0) op.kmsg = pending;
    pending = [];
    out.push(JSON.stringify(op));
    continue;
  }
  const k = keep(l);
  if (k !== null) pending.push(k);
}
if (pending.length > 0) out.push(JSON.stringify({ op: 'trailer', kmsg: pending }));
process.stdout.write(out.join('\n') + '\n');
