/*
 * Guest memory layout shared by the monitor (C) and the guest-side stubs
 * (guest.S), so it must stay plain #defines.
 *
 * Guest-physical == guest-virtual everywhere the guest can reach.
 *
 *   0x000000 .. 0x200000   KM page tables; never mapped into the guest, so a
 *                          NULL dereference faults and the guest cannot edit
 *                          its own page tables.
 *   0x200000 .. TOP        guest memory: ELF segments, brk, mmap, and the
 *                          2 MiB stack at the very top. Only chunks holding
 *                          reserved pages are backed; touching the others
 *                          is a guest fault, like unmapped memory on Linux.
 *   TOP .. TOP+PRIV_SIZE   KM-private area (4 KiB pages): GDT/TSS/IDT and the
 *                          guest-side stubs read-only, per-vCPU GS slots and
 *                          the exception stack writable.
 */
#ifndef KM_LAYOUT_H
#define KM_LAYOUT_H

#define KM_PAGE_SIZE        0x1000
#define KM_GUEST_BASE       0x200000            /* lowest guest address */
#define KM_GUEST_TOP        0x40000000          /* 1 GiB, reserved lazily */
#define KM_STACK_SIZE       0x200000
/*
 * Guest memory is given to KVM in chunks, registered when KM first reserves
 * pages in them: a memory slot's setup and teardown cost grows with its
 * size, and most payloads touch two chunks (image+heap, mmap+stack).
 */
#define KM_CHUNK_SIZE       0x2000000           /* 32 MiB */

#define KM_PRIV_BASE        KM_GUEST_TOP
#define KM_PRIV_SIZE        0x4000
#define KM_PRIV_GDT         0x0000              /* 5 descriptors */
#define KM_PRIV_TSS         0x0080              /* 104-byte 64-bit TSS */
#define KM_PRIV_IDT         0x0200              /* 32 gates, 16 bytes each */
#define KM_PRIV_CODE        0x1000              /* guest.S blob */
#define KM_PRIV_GS          0x2000              /* 64-byte slot per vCPU */
#define KM_PRIV_IST_TOP     0x4000              /* exception stack top */
#define KM_GS_SLOT_SIZE     64

/* Guest-physical page-table pages, all below KM_GUEST_BASE. */
#define KM_PT_PML4          0x1000
#define KM_PT_PDPT          0x2000
#define KM_PT_PD            0x3000              /* one per GiB, consecutive */

#define KM_SEL_CODE         0x08
#define KM_SEL_DATA         0x10
#define KM_SEL_TSS          0x18

/* Hypercall n is `outl %eax, %dx` with dx = KM_HC_PORT_BASE + n. */
#define KM_HC_PORT_BASE     0x8000
#define KM_HC_MAX           512
/* KM-private port used by the guest exception stubs (outside hypercall range). */
#define KM_FAULT_PORT       0x8200

#define KM_EXC_VECTORS      32
#define KM_EXC_STUB_SIZE    16

#endif
