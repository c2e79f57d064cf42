// The event kinds of dma/: what a CONFIG_DMA_API_DEBUG kernel prints (kernel/dma/debug.c), the
// checks only the model makes (docs/model.md lists each), and cache maintenance on non-coherent
// devices (arch_sync_dma_for_device / _for_cpu).
import { declareEventKinds, type EventLog, type KernelEvent } from '../base/index.ts';

declare module '../base/events.ts' {
  interface EventKinds {
    /** A report of kernel/dma/debug.c, as close to its text as the event format allows. */
    'DMA-DEBUG': true;
    /** Misuse the model detects and no kernel reports (source 'model-check'). */
    'MODEL-CHECK': true;
    /** One cache-maintenance operation. */
    CACHE: true;
  }
}
declareEventKinds('dma', ['DMA-DEBUG', 'MODEL-CHECK', 'CACHE']);

/** Records what dma-debug prints (source 'dma-debug'). */
export function dmaDebugEvent(events: EventLog, message: string, data?: Record<string, unknown>): KernelEvent {
  return events.record('DMA-DEBUG', 'dma-debug', message, data);
}

/** Records a misuse only the model checks (source 'model-check'; printed by no kernel). */
export function modelCheckEvent(events: EventLog, message: string, data?: Record<string, unknown>): KernelEvent {
  return events.record('MODEL-CHECK', 'model-check', message, data);
}

/**
 * A KERN_WARNING printk (dev_warn, dev_warn_ratelimited, pr_warn): a log line, not a WARN() splat.
 * Recorded as an INFO event with `data.level: 'warning'`, as the PCI layer records pci_warn.
 */
export function printkWarning(events: EventLog, source: string, message: string, data?: Record<string, unknown>): KernelEvent {
  return events.record('INFO', source, message, { level: 'warning', ...data });
}
