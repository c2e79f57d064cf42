// base/: addresses, log2, errno + Result, bug/warn log, counters, PRNG.
export * from './addr.ts';
export * from './result.ts';
export * from './events.ts';
export * from './prng.ts';
export * from './stats.ts';
export * from './units.ts';
export * from './log2.ts';
export * from './frame-offset.ts';
