// The counters of the RDMA driver (drivers/rdma) and its NIC model: registrations, MTT work, what
// the NIC executed and moved, and its ODP page faults. Imported for its effect.
import { declareCounters } from '../../base/index.ts';

declare module '../../base/stats.ts' {
  interface StatsCounters {
    /** ib_umem_get calls that succeeded, and the base pages they pinned. */
    rdmaUmemGets: number;
    rdmaUmemPagesPinned: number;
    /** Memory regions registered (any kind) and deregistered. */
    rdmaMrRegs: number;
    rdmaMrDeregs: number;
    /** MTT entries written by the driver (registration, updates) and entries zapped (ODP invalidation). */
    rdmaMttEntriesWritten: number;
    rdmaMttEntriesZapped: number;
    /** Work requests the NIC executed, those that completed with an error status, and payload bytes moved. */
    rdmaNicWrs: number;
    rdmaNicErrors: number;
    rdmaNicBytes: number;
    /** MTT entries the NIC read by DMA. */
    rdmaNicMttReads: number;
    /** Page faults the NIC raised on an invalid MTT entry (ODP), and those the MR owner's handler resolved. */
    rdmaNicPageFaults: number;
    rdmaNicPageFaultsResolved: number;
  }
}

declareCounters('rdma', [
  'rdmaUmemGets', 'rdmaUmemPagesPinned', 'rdmaMrRegs', 'rdmaMrDeregs', 'rdmaMttEntriesWritten', 'rdmaMttEntriesZapped',
  'rdmaNicWrs', 'rdmaNicErrors', 'rdmaNicBytes', 'rdmaNicMttReads', 'rdmaNicPageFaults', 'rdmaNicPageFaultsResolved',
]);
