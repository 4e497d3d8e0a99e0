/*
 * Guest memory: the host mapping, overflow-safe translation of guest
 * pointers, and a page bitmap that backs brk and mmap.
 *
 * Invariant: a page that is free in the bitmap is zero in host memory
 * (never touched, or discarded with MADV_DONTNEED when released), so fresh
 * allocations need no zeroing. Reserving pages also makes sure their chunk
 * is backed by a KVM memory slot; pointers the guest hands KM must lie in
 * backed chunks, since nothing else is guest memory from its point of view.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>

#include "km.h"

int km_map_guest_memory(struct km *km)
{
    /*
     * NORESERVE + lazy faulting: only pages the loader or the guest touch
     * cost anything, so a 1 GiB guest starts as fast as a tiny one.
     */
    void *mem = mmap(NULL, (size_t)KM_GUEST_TOP + KM_PRIV_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        km_err(km, "cannot reserve guest memory: %s", km_strerror(errno));
        return KM_EXIT_SETUP;
    }
    km->mem = mem;
    /* Everything below 2 MiB belongs to KM (page tables): never allocatable. */
    km_pages_reserve(km, 0, KM_GUEST_BASE);
    return 0;
}

bool km_range_ok(uint64_t gva, uint64_t len)
{
    return gva >= KM_GUEST_BASE && gva <= KM_GUEST_TOP && len <= KM_GUEST_TOP - gva;
}

/* Bytes from gva to the end of the run of backed chunks it is in (0 if none). */
static uint64_t backed_room(const struct km *km, uint64_t gva)
{
    if (gva < KM_GUEST_BASE || gva >= KM_GUEST_TOP)
        return 0;
    uint64_t c = gva / KM_CHUNK_SIZE;
    while (c < KM_CHUNKS && (km->chunks_backed >> c & 1))
        c++;
    return c * KM_CHUNK_SIZE > gva ? c * KM_CHUNK_SIZE - gva : 0;
}

/* Host address of guest range [gva, gva+len), or NULL if any of it is not guest memory. */
void *km_gptr(const struct km *km, uint64_t gva, uint64_t len)
{
    if (len == 0)
        return km->mem + KM_GUEST_BASE;   /* never dereferenced by a 0-length op */
    if (len > backed_room(km, gva))
        return NULL;
    return km->mem + gva;
}

/* Same for KM's private area, used only to read exception frames. */
void *km_priv_ptr(const struct km *km, uint64_t gva, uint64_t len)
{
    if (gva < KM_PRIV_BASE || gva > KM_PRIV_BASE + KM_PRIV_SIZE ||
        len > KM_PRIV_BASE + KM_PRIV_SIZE - gva)
        return NULL;
    return km->mem + gva;
}

/*
 * A NUL-terminated guest string of at most max bytes (NUL included), or
 * NULL with *err = -EFAULT, or `toolong` if it does not end within max.
 */
const char *km_gstrn(const struct km *km, uint64_t gva, size_t max, int toolong, int *err)
{
    uint64_t room = backed_room(km, gva);
    if (room == 0) {
        *err = -EFAULT;
        return NULL;
    }
    size_t n = room < max ? (size_t)room : max;
    const char *s = (const char *)km->mem + gva;
    if (!memchr(s, '\0', n)) {
        *err = n == max ? toolong : -EFAULT;
        return NULL;
    }
    return s;
}

/* A guest path: at most PATH_MAX bytes. */
const char *km_gstr(const struct km *km, uint64_t gva, int *err)
{
    return km_gstrn(km, gva, PATH_MAX, -ENAMETOOLONG, err);
}

static void set_pages(struct km *km, uint64_t start, uint64_t end, bool used)
{
    for (uint64_t pg = km_page_down(start) / KM_PAGE_SIZE; pg < km_page_up(end) / KM_PAGE_SIZE; pg++) {
        uint64_t bit = 1ULL << (pg % 64);
        if (used)
            km->page_used[pg / 64] |= bit;
        else
            km->page_used[pg / 64] &= ~bit;
    }
}

/*
 * Callers pass ranges already checked against KM_GUEST_TOP. Fails only if
 * KVM refuses a new memory slot.
 */
bool km_pages_reserve(struct km *km, uint64_t start, uint64_t end)
{
    if (end <= start)
        return true;
    set_pages(km, start, end, true);
    for (uint64_t c = start / KM_CHUNK_SIZE; c <= (end - 1) / KM_CHUNK_SIZE; c++)
        km->chunks_wanted |= 1ULL << c;
    return km_back_chunks(km);
}

void km_pages_release(struct km *km, uint64_t start, uint64_t end)
{
    start = km_page_down(start);
    end = km_page_up(end);
    if (start < KM_GUEST_BASE)
        start = KM_GUEST_BASE;
    if (end <= start)
        return;
    set_pages(km, start, end, false);
    km_discard(km, start, end - start);
}

/*
 * Drops guest pages: they read as zero afterwards. After a resume some are
 * MAP_PRIVATE pages of the snapshot file, where MADV_DONTNEED would bring
 * the file's bytes back, so those get fresh anonymous memory instead.
 */
void km_discard(struct km *km, uint64_t start, uint64_t len)
{
    if (km->file_backed &&
        mmap(km->mem + start, len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) != MAP_FAILED)
        return;
    if (km->file_backed)
        memset(km->mem + start, 0, len);
    else
        madvise(km->mem + start, len, MADV_DONTNEED);
}

bool km_pages_free(const struct km *km, uint64_t start, uint64_t end)
{
    for (uint64_t pg = km_page_down(start) / KM_PAGE_SIZE; pg < km_page_up(end) / KM_PAGE_SIZE; pg++)
        if (km_page_in_use(km, pg))
            return false;
    return true;
}

/* Highest free run of len bytes (page multiple) ending at or below `below`; 0 if none. */
uint64_t km_pages_find(const struct km *km, uint64_t len, uint64_t below)
{
    uint64_t need = len / KM_PAGE_SIZE, run = 0;

    for (uint64_t pg = below / KM_PAGE_SIZE; pg-- > KM_GUEST_BASE / KM_PAGE_SIZE;) {
        run = km_page_in_use(km, pg) ? 0 : run + 1;
        if (run == need)
            return pg * KM_PAGE_SIZE;
    }
    return 0;
}
