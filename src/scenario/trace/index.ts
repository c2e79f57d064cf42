// scenario/trace: the address trace, every address a byte has at every layer (user VA, user
// page-table entry, pfn and folio, physical address, memory type and P2P provider; per device
// mapping the descriptor entry, the bus / dma-direct address or the IOVA with each IOMMU table
// level walked and the IOTLB peeked, the swiotlb slot; per IOAS mapping the area and each
// hw_pagetable's domain walk with the devices attached to it), for one byte or a whole buffer in runs.
export type {
  BufferTrace, ByteTrace, CpuTrace, DescriptorTrace, DeviceTrace, DeviceViewTrace, FolioTrace, IoasDeviceTrace, IoasHwptTrace,
  IoasViewTrace, IommuLevelTrace, IommuTrace, MemoryTrace, P2pProviderTrace, TraceRun,
} from './types.ts';
export { memoryAt, p2pProviderAt, traceCpu } from './cpu.ts';
export { hexBytes, reachesByte, traceDevice, traceIommuDomain } from './device.ts';
export { traceIoas, type TraceIoasMapping } from './ioas.ts';
export { descriptorKind, traceRange, type TraceMapping, type TraceSegment, type TraceTarget } from './buffer.ts';
export { defaultTraceStep, ioasMappingsOf, mappingsOf, traceBuffer, type TraceBufferOptions } from './scenario.ts';
export { bigintHex, renderTrace, traceToJson } from './format.ts';
