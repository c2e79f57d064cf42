// base/ for the model's other layers: typed slots for state kept on devices and machines, and
// everything in base/index.ts. Not part of the package API.
export * from './index.ts';
export * from './frame-offset.ts';
export { declareCounters, type StatsCounters } from './stats.ts';
