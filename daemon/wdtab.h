/*
 * wdtab: what each inotify watch descriptor stands for, as one tagged
 * pointer per descriptor.  The kernel hands out descriptors as small
 * integers counting up from 1, so the table is an array of pages of
 * WDTAB_PAGE slots indexed by the descriptor: 8 bytes per watch, where a
 * hash of malloc'd records cost about 80.  A page is freed when its last
 * watch goes, so removed watches do not keep memory.
 *
 * A value is a pointer aligned to 8 bytes with a kind (0 to 7) in its low
 * three bits; values are never NULL.  Loop thread only.
 */
#ifndef MAILKEEPD_WDTAB_H
#define MAILKEEPD_WDTAB_H

#include <stddef.h>

struct mk_wdtab;

struct mk_wdtab *mk_wdtab_new(void);
void mk_wdtab_free(struct mk_wdtab **tabp);

/* Set wd (>= 0) to ptr with kind, replacing what it was. */
void mk_wdtab_put(struct mk_wdtab *tab, int wd, void *ptr, unsigned kind);

/* 1 with *ptr_r and *kind_r when wd is known, else 0. */
int mk_wdtab_get(
    const struct mk_wdtab *tab, int wd, void **ptr_r, unsigned *kind_r);

/* Forget wd; false when it was not known. */
int mk_wdtab_remove(struct mk_wdtab *tab, int wd);

/* Watches known. */
size_t mk_wdtab_count(const struct mk_wdtab *tab);

#endif
