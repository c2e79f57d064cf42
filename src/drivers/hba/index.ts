// drivers/hba: a simple SCSI-style host bus adapter's SG list (16-byte entries, 64 KiB per entry),
// built with the common descriptor builder of drivers/sgl.
export {
  HBA_DMA_BOUNDARY, HBA_DRIVER_NAME, HBA_SG_CHAIN, HBA_SG_END_OF_LIST, HBA_SG_ENTRIES_PER_PAGE, HBA_SG_ENTRY_BYTES, HBA_SG_MAX_ENTRY_LEN, hbaBuildSgl,
  hbaFreeSgl, hbaReadSgl, hbaSetup, type HbaCtrl, type HbaSgl,
} from './hba.ts';
