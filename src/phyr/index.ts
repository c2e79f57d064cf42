// phyr/: range types, layouts, the cursor protocol, bvec, scatterlist.
export * from './types.ts';
export * from './flags.ts';
