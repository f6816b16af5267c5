/* Test fixtures: real temporary directories and Maildirs. */
#ifndef MAILKEEP_TEST_FIXTURE_H
#define MAILKEEP_TEST_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

/* A new empty directory under $TMPDIR (or /tmp); free() the result. */
char *fx_tmpdir(void);

/* Remove a tree. */
void fx_rmrf(const char *path);

/* mkdir -p of dir/rel. */
void fx_mkdirs(const char *dir, const char *rel);

/* Write content to dir/rel, creating parents. */
void fx_write(const char *dir, const char *rel, const char *content);

/* Write a file of size bytes of 'x' (no newline) to dir/rel. */
void fx_write_size(const char *dir, const char *rel, size_t size);

/* Create cur/ new/ tmp/ under dir/rel. */
void fx_maildir(const char *dir, const char *rel);

struct mk_repo;

/* A new repository at dir/name, its key file at dir/name.key. */
struct mk_repo *fx_repo_new(const char *dir, const char *name);

/* A path dir/rel in a static buffer (valid for the next three calls). */
const char *fx_path(const char *dir, const char *rel);

#endif
