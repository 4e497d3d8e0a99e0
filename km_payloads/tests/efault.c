/*
 * efault: hands KM pointers outside guest memory (kernel addresses, NULL,
 * KM's own page tables and private area, ranges crossing the top of guest
 * memory, lengths that overflow) and prints "NAME=RESULT" for each, where
 * RESULT is the errno name KM returned. Exits 0 only if every probe got
 * EFAULT.
 */
#include "km_rt.h"

#define GUEST_TOP 0x40000000UL
#define KM_GS_PAGE 0x40002000UL
#define KM_PAGE_TABLES 0x1000UL

static int failures;

static void check(const char *name, long r)
{
    rt_printf("%s=%s\n", name, rt_errname(r));
    failures += r != -EFAULT;
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    struct rt_iovec bad_base = { (void *)0xdead00000000UL, 4 };
    char *top = (char *)GUEST_TOP;

    check("write_kernel_ptr", rt_write(1, (void *)0xffff800000000000UL, 10));
    check("write_null", rt_write(1, 0, 1));
    check("write_crossing_top", rt_write(1, top - 4, 8));
    check("write_len_overflow", rt_write(1, (void *)0x200000, (size_t)-1));
    check("read_into_km_area", rt_read(0, (void *)KM_GS_PAGE, 8));
    check("write_page_tables", rt_write(1, (void *)KM_PAGE_TABLES, 8));
    check("writev_bad_base", rt_writev(1, &bad_base, 1));
    check("writev_bad_array", rt_writev(1, (void *)16, 1));
    check("open_bad_path", rt_open((char *)0x7fff00000000UL, O_RDONLY, 0));
    check("uname_crossing_top", rt_uname((void *)(top - 100)));
    check("clock_gettime_low", rt_clock_gettime(1, (void *)0x100));
    check("getcwd_high", rt_getcwd((char *)0xffffffffffff0000UL, 100));
    check("getrandom_crossing_top", rt_getrandom(top - 1, 2, 0));
    check("fstat_low", rt_fstat(0, (void *)8));
    check("nanosleep_bad", rt_nanosleep((void *)0xffffffff00000000UL, 0));
    check("arch_prctl_get_fs_bad", rt_arch_prctl(ARCH_GET_FS, 0x10));
    check("ioctl_winsize_bad", rt_ioctl(0, TIOCGWINSZ, (void *)(top - 2)));
    rt_printf("failures=%d\n", failures);
    return failures != 0;
}
