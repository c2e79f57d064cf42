// SPDX-License-Identifier: GPL-2.0
/*
 * phyr-oracle: a test driver of the phyr project for QEMU's "edu" PCI device (1234:11e8).
 *
 * Writing anything to /sys/kernel/debug/phyr-oracle/run runs a fixed, deterministic script of DMA
 * API operations on the edu device and prints one JSON object per operation on the console, each
 * line prefixed "PHYR-ORACLE " (a long object is cut into "PHYR-ORACLE+ " lines followed by the
 * last "PHYR-ORACLE " line; the recorder joins them). Each object holds the operation's inputs
 * (physical addresses of the pages used, sizes, offsets, directions, attributes, scatterlist
 * layouts, two-step links) and what the kernel answered (DMA addresses, nents and segments,
 * errors, iommu_iova_to_phys() of every 4 KiB granule as runs) and, where the edu DMA engine moved
 * data, an FNV-1a checksum of the bytes it moved. dma-debug and swiotlb reports appear on the
 * console between two objects; the recorder attaches them to the following object. "t" is the
 * jiffies count (HZ=250) when the operation started, from the start of the script: the replay
 * advances the flush queue's clock by it (under QEMU's -icount it is deterministic).
 *
 * Byte pattern written by the CPU (phyr's replay computes the same):
 *   x = seed * 2654435761 + i (u32); byte = (x ^ (x >> 7) ^ (x >> 13)) & 0xff
 *
 * Every byte the script maps has known contents from the start: probe fills each block it
 * allocates with this pattern (see INIT_SEED_BLK), and the "pages" line says so ("init", the seeds).
 *
 * Not part of the kernel: the recorder (tools/kernel-oracle/record.sh) copies it into
 * drivers/misc/ of a scratch kernel tree.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/dma-mapping.h>
#include <linux/iommu.h>
#include <linux/scatterlist.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/slab.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/swiotlb.h>

#define EDU_DMA_SRC	0x80
#define EDU_DMA_DST	0x88
#define EDU_DMA_CNT	0x90
#define EDU_DMA_CMD	0x98
#define EDU_CMD_START	1
#define EDU_CMD_TO_RAM	2
#define EDU_BUF		0x40000
/*
 * QEMU 7.2's edu_check_range() wants the end of a transfer strictly inside the 4 KiB buffer (and
 * stops QEMU with hw_error otherwise): move at most 4032 bytes.
 */
#define EDU_BUF_LEN	4032

#define NR_SINGLES	32

/*
 * Contents the driver gives its memory when it allocates it (oracle_probe): the pattern with seed
 * INIT_SEED_BLK over the 4 MiB block (i counting from its first byte), INIT_SEED_LOW over the 1 MiB
 * low block and INIT_SEED_SINGLE + n over single page n. The seeds lie far from the script's own
 * (seq, seq + 100000, seq + 200000).
 *
 * The script does not write every byte before a mapping moves it, and bounce buffers move bytes it
 * never wrote: kernel/dma/swiotlb.c: swiotlb_tbl_map_single() copies the whole original range into
 * the bounce slot at map time whatever the direction (swiotlb_bounce(..., DMA_TO_DEVICE), so a
 * partial device write does not clobber the rest), and __swiotlb_tbl_unmap_single() /
 * __swiotlb_sync_single_for_cpu() copy the slot back for FROM_DEVICE / BIDIRECTIONAL. A bounced
 * mapping that overlaps another one can therefore put back bytes the page held before the device
 * wrote through the other mapping. Without this fill those are whatever the page held at boot;
 * with it the replay knows them and compares every checksum.
 */
#define INIT_SEED_BLK		1000001u
#define INIT_SEED_LOW		1000002u
#define INIT_SEED_SINGLE	1000100u
#define MAX_LIVE	48
#define LINE_MAX_OUT	800
#define JSON_MAX	16384

static bool untrusted;
module_param(untrusted, bool, 0444);
MODULE_PARM_DESC(untrusted, "mark the edu device untrusted (QEMU cannot mark one)");

struct live_map {
	int seq;		/* seq of the map_phys op, 0 when free */
	phys_addr_t phys;
	dma_addr_t dma;
	size_t len;
	enum dma_data_direction dir;
	unsigned long attrs;
	unsigned int moved;	/* bytes the device wrote (FROM_DEVICE checks at unmap) */
	u32 wseed;
};

struct oracle {
	struct pci_dev *pdev;
	struct device *dev;
	void __iomem *mmio;
	struct page *blk;		/* 4 MiB, GFP_KERNEL */
	phys_addr_t blk_phys;
	struct page *low;		/* 1 MiB, GFP_DMA */
	phys_addr_t low_phys;
	phys_addr_t singles[NR_SINGLES];
	/*
	 * scratch page the device copies through (a streaming BIDIRECTIONAL mapping): a GFP_DMA page of
	 * its own, outside the memory the script maps, so the staging of every device read and write
	 * never shows in the checksums of the test memory
	 */
	phys_addr_t scratch_phys;
	dma_addr_t scratch_dma;
	bool scratch_ok;
	int seq;
	unsigned long t0, t_op;
	bool stamped;
	u32 rng;
	char *json;
	int jlen;
	struct live_map live[MAX_LIVE];
};

static struct oracle *the_oracle;

/* ---- JSON output ---- */

static void j_raw(struct oracle *o, const char *fmt, ...) __printf(2, 3);
static void j_raw(struct oracle *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->jlen >= JSON_MAX - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->json + o->jlen, JSON_MAX - o->jlen, fmt, ap);
	va_end(ap);
	o->jlen += n;
	if (o->jlen > JSON_MAX - 1)
		o->jlen = JSON_MAX - 1;
}

/*
 * The time an operation starts: just before its first DMA API call (after any CPU fill of the
 * range, which takes jiffies of its own on a large range under -icount).
 */
static void stamp(struct oracle *o)
{
	o->t_op = jiffies;
	o->stamped = true;
}

static int j_begin(struct oracle *o, const char *op)
{
	unsigned long t = o->stamped ? o->t_op : jiffies;

	o->stamped = false;
	o->jlen = 0;
	o->seq++;
	j_raw(o, "{\"seq\":%d,\"op\":\"%s\",\"t\":%lu", o->seq, op, t - o->t0);
	return o->seq;
}

static void j_hex(struct oracle *o, const char *k, u64 v)
{
	j_raw(o, ",\"%s\":\"0x%llx\"", k, v);
}

static void j_int(struct oracle *o, const char *k, long long v)
{
	j_raw(o, ",\"%s\":%lld", k, v);
}

static void j_str(struct oracle *o, const char *k, const char *v)
{
	j_raw(o, ",\"%s\":\"%s\"", k, v);
}

static void j_end(struct oracle *o)
{
	int off = 0;

	j_raw(o, "}");
	while (o->jlen - off > LINE_MAX_OUT) {
		pr_info("PHYR-ORACLE+ %.*s\n", LINE_MAX_OUT, o->json + off);
		off += LINE_MAX_OUT;
	}
	pr_info("PHYR-ORACLE %s\n", o->json + off);
}

static const char *dir_name(enum dma_data_direction dir)
{
	switch (dir) {
	case DMA_BIDIRECTIONAL: return "bidi";
	case DMA_TO_DEVICE: return "to";
	case DMA_FROM_DEVICE: return "from";
	default: return "none";
	}
}

/* ---- bytes ---- */

static u8 pat_byte(u32 seed, u32 i)
{
	u32 x = seed * 2654435761u + i;

	return (x ^ (x >> 7) ^ (x >> 13)) & 0xff;
}

static void fill(phys_addr_t phys, size_t n, u32 seed)
{
	u8 *p = phys_to_virt(phys);
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = pat_byte(seed, i);
}

static u32 fnv(const u8 *p, size_t n)
{
	u32 h = 2166136261u;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

/* ---- the edu DMA engine ---- */

static int edu_dma(struct oracle *o, u64 src, u64 dst, u32 cnt, bool to_ram)
{
	int i;

	writeq(src, o->mmio + EDU_DMA_SRC);
	writeq(dst, o->mmio + EDU_DMA_DST);
	writeq(cnt, o->mmio + EDU_DMA_CNT);
	writeq(EDU_CMD_START | (to_ram ? EDU_CMD_TO_RAM : 0), o->mmio + EDU_DMA_CMD);
	for (i = 0; i < 10000; i++) {
		if (!(readq(o->mmio + EDU_DMA_CMD) & EDU_CMD_START))
			return 0;
		msleep(1);
	}
	return -ETIMEDOUT;
}

/* The edu clamps DMA addresses to 28 bits: move bytes only where the device really reaches. */
static bool edu_reaches(dma_addr_t dma, size_t n)
{
	return dma + n <= (1ULL << 28);
}

/* Device reads n bytes at dma; returns the checksum of what it read, via the scratch page. */
static bool dev_read(struct oracle *o, dma_addr_t dma, size_t n, u32 *sum)
{
	if (!o->scratch_ok || !edu_reaches(dma, n) || !edu_reaches(o->scratch_dma, n))
		return false;
	if (edu_dma(o, dma, EDU_BUF, n, false) || edu_dma(o, EDU_BUF, o->scratch_dma, n, true))
		return false;
	dma_sync_single_for_cpu(o->dev, o->scratch_dma, PAGE_SIZE, DMA_BIDIRECTIONAL);
	*sum = fnv(phys_to_virt(o->scratch_phys), n);
	return true;
}

/* Device writes n bytes of pattern `seed` at dma (from the scratch page). */
static bool dev_write(struct oracle *o, dma_addr_t dma, size_t n, u32 seed)
{
	if (!o->scratch_ok || !edu_reaches(dma, n) || !edu_reaches(o->scratch_dma, n))
		return false;
	fill(o->scratch_phys, n, seed);
	dma_sync_single_for_device(o->dev, o->scratch_dma, PAGE_SIZE, DMA_BIDIRECTIONAL);
	if (edu_dma(o, o->scratch_dma, EDU_BUF, n, false) || edu_dma(o, EDU_BUF, dma, n, true))
		return false;
	return true;
}

/* ---- IOMMU view ---- */

static struct iommu_domain *dma_domain(struct oracle *o)
{
	struct iommu_domain *d = iommu_get_domain_for_dev(o->dev);

	if (!d || !(d->type & __IOMMU_DOMAIN_PAGING))
		return NULL;
	return d;
}

/* iommu_iova_to_phys of every 4 KiB granule of [iova, iova + len), as runs [iova, phys, count]. */
static void j_i2p(struct oracle *o, const char *key, dma_addr_t iova, size_t len)
{
	struct iommu_domain *d = dma_domain(o);
	u64 a, end, run_iova = 0, run_phys = 0, n = 0;
	bool first = true;

	if (!d || len == 0)
		return;
	a = iova & ~0xfffULL;
	end = (iova + len + 0xfff) & ~0xfffULL;
	j_raw(o, ",\"%s\":[", key);
	for (; a < end; a += 4096) {
		u64 p = iommu_iova_to_phys(d, a);

		if (n && ((p == 0 && run_phys == 0) || (p && run_phys && p == run_phys + n * 4096))) {
			n++;
			continue;
		}
		if (n) {
			j_raw(o, "%s[\"0x%llx\",\"0x%llx\",%llu]", first ? "" : ",", run_iova, run_phys, n);
			first = false;
		}
		run_iova = a;
		run_phys = p;
		n = 1;
	}
	if (n)
		j_raw(o, "%s[\"0x%llx\",\"0x%llx\",%llu]", first ? "" : ",", run_iova, run_phys, n);
	j_raw(o, "]");
}

/* ---- PRNG (xorshift32) ---- */

static u32 rnd(struct oracle *o)
{
	u32 x = o->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	o->rng = x;
	return x;
}

static u32 rnd_below(struct oracle *o, u32 n)
{
	return rnd(o) % n;
}

/* ---- operations ---- */

static void op_caps(struct oracle *o, const char *why)
{
	struct iommu_domain *d = iommu_get_domain_for_dev(o->dev);
	const char *dt = "none";

	if (d) {
		if (d->type == IOMMU_DOMAIN_DMA_FQ)
			dt = "dma-fq";
		else if (d->type == IOMMU_DOMAIN_DMA)
			dt = "dma";
		else if (d->type == IOMMU_DOMAIN_IDENTITY)
			dt = "identity";
		else
			dt = "other";
	}
	j_begin(o, "caps");
	j_str(o, "why", why);
	j_hex(o, "mask", dma_get_mask(o->dev));
	j_int(o, "maxSeg", dma_get_max_seg_size(o->dev));
	j_hex(o, "segBoundary", dma_get_seg_boundary(o->dev));
	j_hex(o, "minAlign", dma_get_min_align_mask(o->dev));
	j_hex(o, "maxMapping", dma_max_mapping_size(o->dev));
	j_hex(o, "optMapping", dma_opt_mapping_size(o->dev));
	j_str(o, "domain", dt);
	j_int(o, "untrusted", o->pdev->untrusted);
	if (d && d->geometry.force_aperture)
		j_hex(o, "apertureEnd", d->geometry.aperture_end);
	j_end(o);
}

static void op_set_mask(struct oracle *o, int bits)
{
	int rc;

	stamp(o);
	rc = dma_set_mask_and_coherent(o->dev, DMA_BIT_MASK(bits));

	j_begin(o, "set_mask");
	j_int(o, "bits", bits);
	j_int(o, "rc", rc);
	j_end(o);
}

static void op_set_limits(struct oracle *o, unsigned int max_seg, unsigned long boundary, unsigned int min_align)
{
	stamp(o);
	dma_set_max_seg_size(o->dev, max_seg);
	dma_set_seg_boundary(o->dev, boundary);
	dma_set_min_align_mask(o->dev, min_align);
	j_begin(o, "set_limits");
	j_int(o, "maxSeg", max_seg);
	j_hex(o, "segBoundary", boundary);
	j_hex(o, "minAlign", min_align);
	j_end(o);
}

static struct live_map *live_slot(struct oracle *o)
{
	int i;

	for (i = 0; i < MAX_LIVE; i++)
		if (!o->live[i].seq)
			return &o->live[i];
	return NULL;
}

/*
 * dma_map_phys of [phys, phys + len). xfer: the CPU fills the bytes first (TO_DEVICE /
 * BIDIRECTIONAL) and the device reads them ("rd"); the device writes a pattern (FROM_DEVICE /
 * BIDIRECTIONAL, "wseed"), checked by the CPU at unmap ("wr"). Every unmap that is not TO_DEVICE
 * also prints the checksum of the whole range as the CPU finds it ("cpu"): the bytes the device did
 * not write must be what the range held before (kernel/dma/swiotlb.c: swiotlb_tbl_map_single()
 * copies the original into the bounce slot whatever the direction, so the copy back at unmap keeps
 * them).
 */
static struct live_map *op_map_phys(struct oracle *o, phys_addr_t phys, size_t len,
				    enum dma_data_direction dir, unsigned long attrs, bool xfer)
{
	struct live_map *l = live_slot(o);
	dma_addr_t dma;
	int seq;
	u32 sum;
	size_t n = min_t(size_t, len, EDU_BUF_LEN);

	if (!l)
		return NULL;
	seq = o->seq + 1;
	if (xfer && dir != DMA_FROM_DEVICE)
		fill(phys, len, seq);
	/* after the fill (a few jiffies for a large range): the flush-queue timer runs meanwhile */
	stamp(o);
	dma = dma_map_phys(o->dev, phys, len, dir, attrs);
	j_begin(o, "map_phys");
	j_hex(o, "phys", phys);
	j_int(o, "len", len);
	j_str(o, "dir", dir_name(dir));
	j_hex(o, "attrs", attrs);
	if (xfer)
		j_int(o, "xfer", 1);
	if (dma_mapping_error(o->dev, dma)) {
		j_raw(o, ",\"err\":true");
		j_end(o);
		return NULL;
	}
	j_hex(o, "dma", dma);
	j_i2p(o, "i2p", dma, len);
	*l = (struct live_map){ .seq = seq, .phys = phys, .dma = dma, .len = len, .dir = dir, .attrs = attrs };
	if (xfer && dir != DMA_FROM_DEVICE && dev_read(o, dma, n, &sum)) {
		j_int(o, "rdLen", n);
		j_raw(o, ",\"rd\":\"%08x\"", sum);
	}
	if (xfer && dir != DMA_TO_DEVICE && dev_write(o, dma, n, seq + 100000)) {
		l->moved = n;
		l->wseed = seq + 100000;
		j_int(o, "wrLen", n);
		j_int(o, "wseed", l->wseed);
	}
	j_end(o);
	return l;
}

static void op_unmap_phys(struct oracle *o, struct live_map *l)
{
	stamp(o);
	j_begin(o, "unmap_phys");
	j_int(o, "of", l->seq);
	j_hex(o, "dma", l->dma);
	j_int(o, "len", l->len);
	j_str(o, "dir", dir_name(l->dir));
	j_hex(o, "attrs", l->attrs);
	dma_unmap_phys(o->dev, l->dma, l->len, l->dir, l->attrs);
	j_i2p(o, "i2p", l->dma, l->len);
	if (l->moved)
		j_raw(o, ",\"wr\":\"%08x\"", fnv(phys_to_virt(l->phys), l->moved));
	if (l->dir != DMA_TO_DEVICE)
		j_raw(o, ",\"cpu\":\"%08x\"", fnv(phys_to_virt(l->phys), l->len));
	j_end(o);
	l->seq = 0;
}

/* dma_sync_single_for_{cpu,device} of [dma + off, + len) of a live mapping, with a device write first (for_cpu). */
static void op_sync(struct oracle *o, struct live_map *l, size_t off, size_t len, bool for_cpu)
{
	size_t n = min_t(size_t, len, EDU_BUF_LEN);
	bool wrote = false;
	u32 seed = o->seq + 1 + 200000;

	stamp(o);
	j_begin(o, for_cpu ? "sync_cpu" : "sync_device");
	j_int(o, "of", l->seq);
	j_hex(o, "dma", l->dma + off);
	j_int(o, "len", len);
	j_str(o, "dir", dir_name(l->dir));
	if (for_cpu) {
		if (l->dir != DMA_TO_DEVICE)
			wrote = dev_write(o, l->dma + off, n, seed);
		dma_sync_single_for_cpu(o->dev, l->dma + off, len, l->dir);
		if (wrote) {
			j_int(o, "wrLen", n);
			j_int(o, "wseed", seed);
			j_raw(o, ",\"wr\":\"%08x\"", fnv(phys_to_virt(l->phys + off), n));
		}
	} else {
		u32 sum;

		if (l->dir != DMA_FROM_DEVICE) {
			fill(l->phys + off, len, seed);
			j_int(o, "fillSeed", seed);
		}
		dma_sync_single_for_device(o->dev, l->dma + off, len, l->dir);
		if (l->dir != DMA_FROM_DEVICE && dev_read(o, l->dma + off, n, &sum)) {
			j_int(o, "rdLen", n);
			j_raw(o, ",\"rd\":\"%08x\"", sum);
		}
	}
	j_end(o);
}

/* ---- scatterlists ---- */

struct sg_ent {
	phys_addr_t page;	/* page-aligned */
	unsigned int off, len;
};

struct live_sg {
	int seq;
	struct sg_table sgt;
	enum dma_data_direction dir;
	unsigned long attrs;
};

static void j_ents(struct oracle *o, const struct sg_ent *e, int n)
{
	int i;

	j_raw(o, ",\"ents\":[");
	for (i = 0; i < n; i++)
		j_raw(o, "%s[\"0x%llx\",%u,%u]", i ? "," : "", (u64)e[i].page, e[i].off, e[i].len);
	j_raw(o, "]");
}

static bool op_map_sg(struct oracle *o, struct live_sg *ls, const struct sg_ent *e, int n,
		      enum dma_data_direction dir, unsigned long attrs)
{
	struct scatterlist *sg;
	int i, rc;

	memset(ls, 0, sizeof(*ls));
	stamp(o);
	if (sg_alloc_table(&ls->sgt, n, GFP_KERNEL))
		return false;
	for_each_sg(ls->sgt.sgl, sg, n, i)
		sg_set_page(sg, pfn_to_page(e[i].page >> PAGE_SHIFT), e[i].len, e[i].off);
	rc = dma_map_sgtable(o->dev, &ls->sgt, dir, attrs);
	ls->seq = j_begin(o, "map_sg");
	j_ents(o, e, n);
	j_str(o, "dir", dir_name(dir));
	j_hex(o, "attrs", attrs);
	j_int(o, "rc", rc);
	if (rc) {
		j_end(o);
		sg_free_table(&ls->sgt);
		ls->seq = 0;
		return false;
	}
	j_int(o, "nents", ls->sgt.nents);
	j_raw(o, ",\"segs\":[");
	for_each_sgtable_dma_sg(&ls->sgt, sg, i)
		j_raw(o, "%s[\"0x%llx\",%u]", i ? "," : "", (u64)sg_dma_address(sg), sg_dma_len(sg));
	j_raw(o, "]");
	{
		/* every granule of every DMA segment, as one list of runs */
		struct iommu_domain *d = dma_domain(o);

		if (d) {
			j_raw(o, ",\"segI2p\":[");
			for_each_sgtable_dma_sg(&ls->sgt, sg, i) {
				j_raw(o, "%s", i ? "," : "");
				/* reuse j_i2p's format without its key */
				{
					int save = o->jlen;

					j_i2p(o, "x", sg_dma_address(sg), sg_dma_len(sg));
					/* strip the ,"x": prefix */
					memmove(o->json + save, o->json + save + 5, o->jlen - save - 5);
					o->jlen -= 5;
				}
			}
			j_raw(o, "]");
		}
	}
	ls->dir = dir;
	ls->attrs = attrs;
	j_end(o);
	return true;
}

static void op_unmap_sg(struct oracle *o, struct live_sg *ls)
{
	stamp(o);
	j_begin(o, "unmap_sg");
	j_int(o, "of", ls->seq);
	j_str(o, "dir", dir_name(ls->dir));
	j_hex(o, "attrs", ls->attrs);
	dma_unmap_sgtable(o->dev, &ls->sgt, ls->dir, ls->attrs);
	j_end(o);
	sg_free_table(&ls->sgt);
	ls->seq = 0;
}

/* ---- pages ---- */

/* A physical address inside the test memory: region 0 = 4 MiB block, 1 = 1 MiB low block, 2 = singles. */
static phys_addr_t pick_page(struct oracle *o, int region, u32 idx)
{
	switch (region) {
	case 0: return o->blk_phys + (phys_addr_t)(idx % 1024) * PAGE_SIZE;
	case 1: return o->low_phys + (phys_addr_t)(idx % 256) * PAGE_SIZE;
	default: return o->singles[idx % NR_SINGLES];
	}
}

static const enum dma_data_direction dirs[3] = { DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL };

/* ---- scenarios ---- */

static void sc_map_phys_basic(struct oracle *o)
{
	static const struct { int region; u32 page; u32 off; u32 len; } t[] = {
		{ 0, 0, 0, 4096 }, { 0, 1, 0, 8192 }, { 0, 3, 100, 1000 }, { 0, 5, 4000, 200 },
		{ 0, 8, 0, 65536 }, { 0, 30, 12, 65536 }, { 0, 100, 0, 1 }, { 0, 101, 4095, 2 },
		{ 0, 200, 0, 262144 }, { 0, 300, 2048, 262144 }, { 0, 512, 0, 1048576 },
		{ 1, 0, 0, 4096 }, { 1, 1, 512, 3584 }, { 1, 4, 777, 9000 }, { 2, 0, 0, 4096 },
		{ 2, 1, 64, 64 }, { 2, 2, 4032, 64 }, { 0, 700, 0, 2 * 1048576 - 4096 },
	};
	struct live_map *l;
	int i, d;

	for (i = 0; i < ARRAY_SIZE(t); i++)
		for (d = 0; d < 3; d++) {
			l = op_map_phys(o, pick_page(o, t[i].region, t[i].page) + t[i].off, t[i].len,
					dirs[d], 0, true);
			if (l)
				op_unmap_phys(o, l);
		}
}

static void sc_random_phys(struct oracle *o, int nops, bool xfer)
{
	int i, j;

	for (i = 0; i < nops; i++) {
		u32 r = rnd(o);
		int live = 0;

		for (j = 0; j < MAX_LIVE; j++)
			live += !!o->live[j].seq;
		if ((r & 3) == 0 || live >= 24) {
			/* unmap a random live mapping */
			if (live) {
				int k = rnd_below(o, live);

				for (j = 0; j < MAX_LIVE; j++)
					if (o->live[j].seq && k-- == 0) {
						op_unmap_phys(o, &o->live[j]);
						break;
					}
			}
			continue;
		} else {
			int region = rnd_below(o, 3);
			u32 page = rnd(o);
			u32 off = (rnd(o) & 1) ? 0 : rnd_below(o, 4096);
			static const u32 sizes[] = { 1, 64, 512, 4096, 4096, 8192, 12288, 65536, 131072, 200000, 524288 };
			u32 len = sizes[rnd_below(o, ARRAY_SIZE(sizes))];
			phys_addr_t phys = pick_page(o, region, page) + off;

			if (region == 2 && off + len > PAGE_SIZE)
				len = PAGE_SIZE - off;
			if (region == 1 && (phys - o->low_phys) + len > 256 * PAGE_SIZE)
				len = o->low_phys + 256 * PAGE_SIZE - phys;
			if (region == 0 && (phys - o->blk_phys) + len > 1024 * PAGE_SIZE)
				len = o->blk_phys + 1024 * PAGE_SIZE - phys;
			op_map_phys(o, phys, len, dirs[rnd_below(o, 3)], 0, xfer && (r & 0x30) == 0);
		}
	}
	for (j = 0; j < MAX_LIVE; j++)
		if (o->live[j].seq)
			op_unmap_phys(o, &o->live[j]);
}

static void sc_sync(struct oracle *o)
{
	static const struct { u32 page; u32 off; u32 len; u32 soff; u32 slen; } t[] = {
		{ 10, 0, 4096, 0, 4096 }, { 11, 100, 8000, 1000, 3000 }, { 14, 7, 20000, 4096, 4096 },
		{ 20, 0, 65536, 65536 - 512, 512 },
	};
	int i, d;

	for (i = 0; i < ARRAY_SIZE(t); i++)
		for (d = 0; d < 3; d++) {
			struct live_map *l = op_map_phys(o, pick_page(o, 1, t[i].page) + t[i].off, t[i].len,
							 dirs[d], 0, false);

			if (!l)
				continue;
			op_sync(o, l, t[i].soff, t[i].slen, true);
			op_sync(o, l, t[i].soff, t[i].slen, false);
			op_unmap_phys(o, l);
		}
}

static void sc_sg(struct oracle *o, int nrandom)
{
	struct live_sg *ls = kcalloc(8, sizeof(*ls), GFP_KERNEL);
	struct sg_ent e[16];
	int i, k, n;

	if (!ls)
		return;
	/* fixed layouts: contiguous pages, a gap, unaligned middles, sub-page pieces */
	for (k = 0; k < 6; k++) {
		phys_addr_t base = pick_page(o, 0, 64 + k * 16);

		switch (k) {
		case 0:	/* 4 contiguous whole pages */
			for (i = 0; i < 4; i++)
				e[i] = (struct sg_ent){ base + i * PAGE_SIZE, 0, PAGE_SIZE };
			n = 4;
			break;
		case 1:	/* 3 pages with a hole */
			e[0] = (struct sg_ent){ base, 0, PAGE_SIZE };
			e[1] = (struct sg_ent){ base + PAGE_SIZE, 0, PAGE_SIZE };
			e[2] = (struct sg_ent){ base + 3 * PAGE_SIZE, 0, PAGE_SIZE };
			n = 3;
			break;
		case 2:	/* an unaligned start and end */
			e[0] = (struct sg_ent){ base, 512, PAGE_SIZE - 512 };
			e[1] = (struct sg_ent){ base + PAGE_SIZE, 0, PAGE_SIZE };
			e[2] = (struct sg_ent){ base + 2 * PAGE_SIZE, 0, 100 };
			n = 3;
			break;
		case 3:	/* unaligned middle entries */
			e[0] = (struct sg_ent){ base, 0, 1000 };
			e[1] = (struct sg_ent){ base + 2 * PAGE_SIZE, 24, 1000 };
			e[2] = (struct sg_ent){ base + 4 * PAGE_SIZE, 0, PAGE_SIZE };
			n = 3;
			break;
		case 4:	/* sub-page pieces of one page */
			e[0] = (struct sg_ent){ base, 0, 512 };
			e[1] = (struct sg_ent){ base, 512, 512 };
			e[2] = (struct sg_ent){ base, 1024, 3072 };
			n = 3;
			break;
		default: /* pages from the singles and the low block */
			e[0] = (struct sg_ent){ o->singles[3], 0, PAGE_SIZE };
			e[1] = (struct sg_ent){ o->singles[4], 0, PAGE_SIZE };
			e[2] = (struct sg_ent){ pick_page(o, 1, 40), 0, 2 * PAGE_SIZE };
			e[3] = (struct sg_ent){ o->singles[5], 100, 200 };
			n = 4;
			break;
		}
		for (i = 0; i < 3; i++)
			if (op_map_sg(o, &ls[0], e, n, dirs[i], 0))
				op_unmap_sg(o, &ls[0]);
	}
	/* random layouts, up to 8 live lists */
	for (k = 0; k < nrandom; k++) {
		int slot = rnd_below(o, 8);

		if (ls[slot].seq) {
			op_unmap_sg(o, &ls[slot]);
			continue;
		}
		n = 1 + rnd_below(o, 12);
		{
			int region = rnd_below(o, 2);
			u32 page = rnd(o);

			for (i = 0; i < n; i++) {
				u32 r = rnd(o);
				u32 off = (r & 3) == 0 ? rnd_below(o, 4096) & ~63u : 0;
				u32 len = (r & 12) == 0 ? PAGE_SIZE - off :
					  (r & 12) == 4 ? 1 + rnd_below(o, PAGE_SIZE - off) :
					  PAGE_SIZE - off + PAGE_SIZE * rnd_below(o, 4);

				if ((r & 0x30) == 0)
					page += 1 + rnd_below(o, 3); /* a hole */
				e[i] = (struct sg_ent){ pick_page(o, region, page), off, len };
				if (region == 1 && (e[i].page - o->low_phys) + off + len > 256 * PAGE_SIZE)
					e[i].len = len = PAGE_SIZE - off;
				if (region == 0 && (e[i].page - o->blk_phys) + off + len > 1024 * PAGE_SIZE)
					e[i].len = len = PAGE_SIZE - off;
				page += (off + len + PAGE_SIZE - 1) / PAGE_SIZE;
			}
		}
		op_map_sg(o, &ls[slot], e, n, dirs[rnd_below(o, 3)], 0);
	}
	for (k = 0; k < 8; k++)
		if (ls[k].seq)
			op_unmap_sg(o, &ls[k]);
	kfree(ls);
}

static void sc_sg_limits(struct oracle *o, int nrandom)
{
	static const struct { unsigned int seg; unsigned long bnd; } lim[] = {
		{ 4096, 0xffffffff }, { 8192, 0xffffffff }, { 65536, 0xffff }, { 65536, 0x1fff },
		{ 1048576, 0xfffff }, { 16384, 0x3fff },
	};
	int i;

	for (i = 0; i < ARRAY_SIZE(lim); i++) {
		op_set_limits(o, lim[i].seg, lim[i].bnd, 0);
		sc_sg(o, nrandom);
	}
	op_set_limits(o, 65536, 0xffffffff, 0);
}

static void op_iova_alloc(struct oracle *o, struct dma_iova_state *st, phys_addr_t phys, size_t size)
{
	bool ok;

	memset(st, 0, sizeof(*st));
	stamp(o);
	ok = dma_iova_try_alloc(o->dev, st, phys, size);
	j_begin(o, "iova_alloc");
	j_hex(o, "phys", phys);
	j_int(o, "len", size);
	j_int(o, "ok", ok);
	if (ok) {
		j_hex(o, "addr", st->addr);
		j_int(o, "size", dma_iova_size(st));
		j_int(o, "swiotlb", !!(st->__size & DMA_IOVA_USE_SWIOTLB));
	}
	j_end(o);
}

static int op_iova_link(struct oracle *o, struct dma_iova_state *st, phys_addr_t phys, size_t off,
			size_t len, enum dma_data_direction dir, unsigned long attrs)
{
	int rc;

	if (dir != DMA_FROM_DEVICE)
		fill(phys, len, o->seq + 1);
	stamp(o);
	rc = dma_iova_link(o->dev, st, phys, off, len, dir, attrs);
	j_begin(o, "iova_link");
	j_hex(o, "phys", phys);
	j_int(o, "offset", off);
	j_int(o, "len", len);
	j_str(o, "dir", dir_name(dir));
	j_hex(o, "attrs", attrs);
	j_int(o, "rc", rc);
	j_int(o, "swiotlb", !!(st->__size & DMA_IOVA_USE_SWIOTLB));
	if (!rc)
		j_i2p(o, "i2p", st->addr + off, len);
	j_end(o);
	return rc;
}

static void op_iova_sync(struct oracle *o, struct dma_iova_state *st, size_t off, size_t len)
{
	int rc;

	stamp(o);
	rc = dma_iova_sync(o->dev, st, off, len);

	j_begin(o, "iova_sync");
	j_int(o, "offset", off);
	j_int(o, "len", len);
	j_int(o, "rc", rc);
	j_end(o);
}

static void op_iova_read(struct oracle *o, struct dma_iova_state *st, size_t off, size_t len)
{
	u32 sum;
	size_t n = min_t(size_t, len, EDU_BUF_LEN);

	stamp(o);
	if (!dev_read(o, st->addr + off, n, &sum))
		return;
	j_begin(o, "dev_read");
	j_hex(o, "dma", st->addr + off);
	j_int(o, "rdLen", n);
	j_raw(o, ",\"rd\":\"%08x\"", sum);
	j_end(o);
}

static void op_iova_unlink(struct oracle *o, struct dma_iova_state *st, size_t off, size_t len,
			   enum dma_data_direction dir, unsigned long attrs)
{
	stamp(o);
	dma_iova_unlink(o->dev, st, off, len, dir, attrs);
	j_begin(o, "iova_unlink");
	j_int(o, "offset", off);
	j_int(o, "len", len);
	j_str(o, "dir", dir_name(dir));
	j_hex(o, "attrs", attrs);
	j_i2p(o, "i2p", st->addr + off, len);
	j_end(o);
}

static void op_iova_free(struct oracle *o, struct dma_iova_state *st)
{
	stamp(o);
	dma_iova_free(o->dev, st);
	j_begin(o, "iova_free");
	j_end(o);
}

static void sc_two_step(struct oracle *o)
{
	struct dma_iova_state st;
	static const struct { u32 page; u32 off; u32 len; } shapes[] = {
		{ 0, 0, 65536 }, { 0, 256, 65536 }, { 3, 100, 12288 }, { 0, 0, 1048576 },
	};
	int i, d;

	for (i = 0; i < ARRAY_SIZE(shapes); i++)
		for (d = 0; d < 3; d++) {
			phys_addr_t base = pick_page(o, 0, 400 + shapes[i].page) + shapes[i].off;
			size_t len = shapes[i].len;

			op_iova_alloc(o, &st, base, len);
			if (!dma_use_iova(&st))
				continue;
			/* link in three pieces from different pages, granule-aligned seams */
			if (op_iova_link(o, &st, base, 0, 4096 - shapes[i].off % 4096, dirs[d], 0) == 0) {
				size_t done = 4096 - shapes[i].off % 4096;

				op_iova_link(o, &st, pick_page(o, 0, 800), done, 8192, dirs[d], 0);
				done += 8192;
				if (len > done)
					op_iova_link(o, &st, pick_page(o, 0, 900), done,
						     min_t(size_t, len - done, 16384), dirs[d], 0);
				/*
				 * Only [0, done) is synced, read and unlinked: the third link stays mapped
				 * when dma_iova_free() gives the IOVA back, so the next window over the same
				 * IOVA meets a live entry (EADDRINUSE), a misuse the replay checks too.
				 */
				op_iova_sync(o, &st, 0, done);
				if (dirs[d] != DMA_FROM_DEVICE)
					op_iova_read(o, &st, 0, done);
				op_iova_unlink(o, &st, 0, done, dirs[d], 0);
			}
			op_iova_free(o, &st);
		}
	/* a misaligned seam: the second link starts mid-granule (EINVAL or a bounce) */
	op_iova_alloc(o, &st, pick_page(o, 0, 420), 16384);
	if (dma_use_iova(&st)) {
		if (op_iova_link(o, &st, pick_page(o, 0, 420), 0, 4096, DMA_TO_DEVICE, 0) == 0) {
			int rc = op_iova_link(o, &st, pick_page(o, 0, 430) + 100, 4096, 4096, DMA_TO_DEVICE, 0);

			op_iova_unlink(o, &st, 0, rc ? 4096 : 8192, DMA_TO_DEVICE, 0);
		}
		op_iova_free(o, &st);
	}
}

static void sc_min_align(struct oracle *o)
{
	op_set_limits(o, 65536, 0xffffffff, 0xfff);
	sc_map_phys_basic(o);
	op_set_limits(o, 65536, 0xffffffff, 0);
}

/* Map the same 4 MiB (TO_DEVICE, so dma-debug allows the overlap) until the IOVA space or swiotlb runs out. */
static void sc_exhaust(struct oracle *o, size_t len, int max)
{
	struct live_map *keep = kcalloc(max, sizeof(*keep), GFP_KERNEL);
	int i, n = 0;

	if (!keep)
		return;
	for (i = 0; i < max; i++) {
		struct live_map *l = op_map_phys(o, o->blk_phys, len, DMA_TO_DEVICE, 0, false);

		if (!l)
			break;
		keep[n++] = *l;
		l->seq = 0;
	}
	for (i = 0; i < n; i++)
		op_unmap_phys(o, &keep[i]);
	kfree(keep);
}

/* dma-debug reports: the misuse comes last in the script (it can leave the allocators inconsistent). */
static void sc_misuse(struct oracle *o)
{
	struct live_map *l, copy;
	dma_addr_t dma;

	/* unmap with the wrong direction */
	l = op_map_phys(o, pick_page(o, 0, 950), 4096, DMA_TO_DEVICE, 0, false);
	if (l) {
		l->dir = DMA_FROM_DEVICE;
		op_unmap_phys(o, l);
	}
	/* sync of more than was mapped */
	l = op_map_phys(o, pick_page(o, 0, 951), 4096, DMA_BIDIRECTIONAL, 0, false);
	if (l) {
		stamp(o);
		j_begin(o, "sync_cpu");
		j_int(o, "of", l->seq);
		j_hex(o, "dma", l->dma);
		j_int(o, "len", 8192);
		j_str(o, "dir", dir_name(l->dir));
		dma_sync_single_for_cpu(o->dev, l->dma, 8192, l->dir);
		j_end(o);
		/* sync with the wrong direction */
		j_begin(o, "sync_device");
		j_int(o, "of", l->seq);
		j_hex(o, "dma", l->dma);
		j_int(o, "len", 4096);
		j_str(o, "dir", "to");
		dma_sync_single_for_device(o->dev, l->dma, 4096, DMA_TO_DEVICE);
		j_end(o);
		op_unmap_phys(o, l);
	}
	/* a map whose error was never checked */
	stamp(o);
	dma = dma_map_phys(o->dev, pick_page(o, 0, 952), 4096, DMA_TO_DEVICE, 0);
	j_begin(o, "map_phys");
	j_hex(o, "phys", pick_page(o, 0, 952));
	j_int(o, "len", 4096);
	j_str(o, "dir", "to");
	j_hex(o, "attrs", 0);
	j_int(o, "unchecked", 1);
	j_hex(o, "dma", dma);
	j_i2p(o, "i2p", dma, 4096);
	j_end(o);
	copy = (struct live_map){ .seq = o->seq, .phys = pick_page(o, 0, 952), .dma = dma, .len = 4096, .dir = DMA_TO_DEVICE };
	op_unmap_phys(o, &copy);
	/* unmap with the wrong size (smaller: leaves nothing behind the IOVA range) */
	l = op_map_phys(o, pick_page(o, 0, 953), 8192, DMA_TO_DEVICE, 0, false);
	if (l) {
		copy = *l;
		l->seq = 0;
		copy.len = 4096;
		op_unmap_phys(o, &copy);
	}
	/* unmap of an address never mapped, and a double unmap: last, they corrupt state */
	l = op_map_phys(o, pick_page(o, 0, 954), 4096, DMA_TO_DEVICE, 0, false);
	if (l) {
		copy = *l;
		op_unmap_phys(o, l);
		op_unmap_phys(o, &copy);
	}
}

static void run_all(struct oracle *o)
{
	struct live_map *s;

	o->seq = 0;
	o->t0 = jiffies;
	o->stamped = false;
	o->rng = 2463534242u;
	pr_info("PHYR-ORACLE-BEGIN\n");
	op_caps(o, "probe");
	j_begin(o, "pages");
	j_hex(o, "blk", o->blk_phys);
	j_int(o, "blkLen", 1024 * PAGE_SIZE);
	j_hex(o, "low", o->low_phys);
	j_int(o, "lowLen", 256 * PAGE_SIZE);
	/* what probe wrote into every page before the script (INIT_SEED_BLK) */
	j_str(o, "init", "pattern");
	j_int(o, "blkSeed", INIT_SEED_BLK);
	j_int(o, "lowSeed", INIT_SEED_LOW);
	j_int(o, "singleSeed", INIT_SEED_SINGLE);
	{
		int i;

		j_raw(o, ",\"singles\":[");
		for (i = 0; i < NR_SINGLES; i++)
			j_raw(o, "%s\"0x%llx\"", i ? "," : "", (u64)o->singles[i]);
		j_raw(o, "]");
	}
	j_hex(o, "scratch", o->scratch_phys);
	/* the default swiotlb pool (pci_iommu_init() prints it only when x86 wants it) */
	j_int(o, "swiotlbActive", is_swiotlb_active(o->dev));
	j_int(o, "swiotlbForce", is_swiotlb_force_bounce(o->dev));
	if (o->dev->dma_io_tlb_mem && o->dev->dma_io_tlb_mem->defpool.nslabs) {
		j_hex(o, "swiotlbStart", o->dev->dma_io_tlb_mem->defpool.start);
		j_hex(o, "swiotlbEnd", o->dev->dma_io_tlb_mem->defpool.end);
		j_int(o, "swiotlbSlabs", o->dev->dma_io_tlb_mem->defpool.nslabs);
	}
	j_end(o);
	op_set_mask(o, 28);
	op_caps(o, "mask28");
	/* the scratch page: a BIDIRECTIONAL streaming mapping, kept to the end */
	s = op_map_phys(o, o->scratch_phys, PAGE_SIZE, DMA_BIDIRECTIONAL, 0, false);
	if (s) {
		o->scratch_dma = s->dma;
		o->scratch_ok = true;
		s->seq = 0;	/* not a live slot */
	}
	sc_map_phys_basic(o);
	sc_sync(o);
	sc_random_phys(o, 300, true);
	sc_sg(o, 60);
	sc_sg_limits(o, 20);
	sc_two_step(o);
	sc_min_align(o);
	op_set_mask(o, 32);
	sc_random_phys(o, 150, false);
	op_set_mask(o, 64);
	op_caps(o, "mask64");
	sc_random_phys(o, 150, false);
	sc_sg(o, 30);
	sc_two_step(o);
	op_set_mask(o, 28);
	sc_exhaust(o, 4 * 1024 * 1024, 80);
	sc_exhaust(o, 256 * 1024, 300);
	sc_misuse(o);
	pr_info("PHYR-ORACLE-END\n");
}

static ssize_t run_write(struct file *f, const char __user *buf, size_t len, loff_t *pos)
{
	if (the_oracle)
		run_all(the_oracle);
	return len;
}

static const struct file_operations run_fops = {
	.write = run_write,
};

static int oracle_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct oracle *o;
	int i, rc;

	rc = pcim_enable_device(pdev);
	if (rc)
		return rc;
	pci_set_master(pdev);
	o = devm_kzalloc(&pdev->dev, sizeof(*o), GFP_KERNEL);
	if (!o)
		return -ENOMEM;
	o->json = devm_kzalloc(&pdev->dev, JSON_MAX, GFP_KERNEL);
	if (!o->json)
		return -ENOMEM;
	o->pdev = pdev;
	o->dev = &pdev->dev;
	o->mmio = pcim_iomap(pdev, 0, 0);
	if (!o->mmio)
		return -ENOMEM;
	if (untrusted)
		pdev->untrusted = 1;
	o->blk = alloc_pages(GFP_KERNEL, 10);
	o->low = alloc_pages(GFP_KERNEL | GFP_DMA, 8);
	if (!o->blk || !o->low)
		return -ENOMEM;
	o->blk_phys = page_to_phys(o->blk);
	o->low_phys = page_to_phys(o->low);
	fill(o->blk_phys, 1024 * PAGE_SIZE, INIT_SEED_BLK);
	fill(o->low_phys, 256 * PAGE_SIZE, INIT_SEED_LOW);
	for (i = 0; i < NR_SINGLES; i++) {
		struct page *p = alloc_page(GFP_KERNEL);

		if (!p)
			return -ENOMEM;
		o->singles[i] = page_to_phys(p);
		fill(o->singles[i], PAGE_SIZE, INIT_SEED_SINGLE + i);
	}
	{
		struct page *p = alloc_page(GFP_KERNEL | GFP_DMA);

		if (!p)
			return -ENOMEM;
		o->scratch_phys = page_to_phys(p);
	}
	the_oracle = o;
	debugfs_create_file("run", 0200, debugfs_create_dir("phyr-oracle", NULL), NULL, &run_fops);
	dev_info(&pdev->dev, "phyr-oracle ready\n");
	return 0;
}

static const struct pci_device_id oracle_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },
	{ }
};

static struct pci_driver oracle_driver = {
	.name = "phyr-oracle",
	.id_table = oracle_ids,
	.probe = oracle_probe,
};
module_pci_driver(oracle_driver);

MODULE_DESCRIPTION("phyr kernel oracle: DMA API recordings on QEMU's edu device");
MODULE_LICENSE("GPL");
