#include <stdint.h>
#include <stdlib.h>

#include "mailkeep/mem.h"

#include "wdtab.h"

#define WDTAB_PAGE 512
#define WDTAB_KIND 7u

struct wdtab_page {
	size_t used;
	uintptr_t slots[WDTAB_PAGE];
};

struct mk_wdtab {
	struct wdtab_page **pages;
	size_t npages;
	size_t count;
};

struct mk_wdtab *
mk_wdtab_new(void)
{
	return mk_xcalloc(1, sizeof(struct mk_wdtab));
}

void
mk_wdtab_free(struct mk_wdtab **tabp)
{
	struct mk_wdtab *tab = *tabp;
	size_t i;

	if (tab == NULL)
		return;
	for (i = 0; i < tab->npages; i++)
		free(tab->pages[i]);
	free(tab->pages);
	free(tab);
	*tabp = NULL;
}

void
mk_wdtab_put(struct mk_wdtab *tab, int wd, void *ptr, unsigned kind)
{
	size_t p = (size_t)wd / WDTAB_PAGE, i = (size_t)wd % WDTAB_PAGE;
	struct wdtab_page *page;

	if (p >= tab->npages) {
		size_t n = tab->npages;

		mk_xgrow(&tab->pages, &n, p + 1, sizeof(*tab->pages));
		while (tab->npages < n)
			tab->pages[tab->npages++] = NULL;
	}
	if ((page = tab->pages[p]) == NULL)
		page = tab->pages[p] = mk_xcalloc(1, sizeof(*page));
	if (page->slots[i] == 0) {
		page->used++;
		tab->count++;
	}
	page->slots[i] = (uintptr_t)ptr | (kind & WDTAB_KIND);
}

int
mk_wdtab_get(const struct mk_wdtab *tab, int wd, void **ptr_r, unsigned *kind_r)
{
	size_t p = (size_t)wd / WDTAB_PAGE, i = (size_t)wd % WDTAB_PAGE;
	uintptr_t v;

	if (wd < 0 || p >= tab->npages || tab->pages[p] == NULL ||
	    (v = tab->pages[p]->slots[i]) == 0)
		return 0;
	*ptr_r = (void *)(v & ~(uintptr_t)WDTAB_KIND);
	*kind_r = (unsigned)(v & WDTAB_KIND);
	return 1;
}

int
mk_wdtab_remove(struct mk_wdtab *tab, int wd)
{
	size_t p = (size_t)wd / WDTAB_PAGE, i = (size_t)wd % WDTAB_PAGE;
	struct wdtab_page *page;

	if (wd < 0 || p >= tab->npages || (page = tab->pages[p]) == NULL ||
	    page->slots[i] == 0)
		return 0;
	page->slots[i] = 0;
	tab->count--;
	if (--page->used == 0) {
		free(page);
		tab->pages[p] = NULL;
	}
	return 1;
}

size_t
mk_wdtab_count(const struct mk_wdtab *tab)
{
	return tab->count;
}
