// machine/ for the layers above: everything in machine/index.ts. Not part of the package API.
export * from './index.ts';
