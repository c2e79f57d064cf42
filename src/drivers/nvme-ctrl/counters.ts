// The counters of the NVMe controller model (drivers/nvme-ctrl): what the device did for the
// commands it executed. Imported for its effect by the controller.
import { declareCounters } from '../../base/index.ts';

declare module '../../base/stats.ts' {
  interface StatsCounters {
    /** Commands executed (any status), and those that completed with a non-zero status. */
    nvmeCtrlCommands: number;
    nvmeCtrlErrors: number;
    /** PRP list pages and SGL segments the controller fetched by DMA, and their bytes. */
    nvmeCtrlDescriptorLists: number;
    nvmeCtrlDescriptorBytes: number;
    /** Data transfers issued (one per physically contiguous run of the data pointer) and bytes moved. */
    nvmeCtrlDataTransfers: number;
    nvmeCtrlDataBytes: number;
  }
}

declareCounters('nvme-ctrl', [
  'nvmeCtrlCommands', 'nvmeCtrlErrors', 'nvmeCtrlDescriptorLists', 'nvmeCtrlDescriptorBytes',
  'nvmeCtrlDataTransfers', 'nvmeCtrlDataBytes',
]);
