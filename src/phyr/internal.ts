// phyr/ for the model's other layers: the cursor classes and column helpers behind the layouts, and
// everything in phyr/index.ts. Not part of the package API.
export * from './index.ts';
export * from './cursor.ts';
export * from './cursors.generated.ts';
export * from './layout-util.ts';
export * from './scatterlist.ts';
export * from './page-list.ts';
export * from './page-array.ts';
export * from './phyr-list.ts';
