// base/: errno + Result, argument checks, log2 and alignment helpers (the kernel's header
// inlines), the machine's event log and counters, the PRNG, byte units, fault injection.
export { ERRNO_VALUES, err, ok, unwrap, type Err, type Errno, type Ok, type Result } from './result.ts';
export * from './addr.ts';
export * from './log2.ts';
export { EventLog, KernelBug, declareEventKinds, eventKinds, type EventKind, type EventKinds, type KernelEvent } from './events.ts';
export { Stats } from './stats.ts';
// typed slots: where a layer or a driver keeps its state on a device or a machine (drivers keep theirs too)
export { SlotKey, Slots } from './slots.ts';
export { Prng, patternBytes } from './prng.ts';
export { describeValue, failConfig } from './describe.ts';
export { GiB, KiB, MiB, TiB, formatBytes, formatCount, hex } from './units.ts';
// the kernel timer wheel's rounding of a timer's expiry (kernel/time/timer.c)
export { timerWheelExpiry } from './timer-wheel.ts';
// for drivers/: the counters a driver or device model declares
export { declareCounters, type StatsCounters } from './stats.ts';
// fault injection at the model's allocation points (the machine's `faults` option)
export {
  FAULT_POINTS, armedFaults, checkFaultSpecs, countFaultPoints, faultCounts, faultInjected, faultsArmed, faultsInjected, setFaults,
  type FaultCounts, type FaultHost, type FaultNth, type FaultPoint, type FaultProbability, type FaultSpec,
} from './faults.ts';
