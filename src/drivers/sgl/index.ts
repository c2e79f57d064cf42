// drivers/sgl: the common descriptor builder: mapped DMA segments to fixed-size hardware
// descriptors (PRP lists, SGL segments, HBA SG lists, ...) through per-driver hooks.
export { sglBuild, sglEntries, sglFree, type DmaSegment, type SglBlock, type SglBuild, type SglError, type SglHooks } from './sgl.ts';
