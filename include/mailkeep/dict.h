/*
 * dict: zstd dictionaries trained on the store's own mail.  Small blobs
 * compress poorly alone (zstd has nothing to learn from within 2 KiB of
 * header); a dictionary trained on a sample of the store's header
 * sections, and one on its small bodies, gives zstd that history.  This
 * module samples a store and trains; repo.c keeps the dictionaries in the
 * repository and pack.c compresses with them.
 *
 * When: before a backup run with `[backup] dictionary = auto`, if the
 * repository has no dictionary of a kind yet and the store has enough
 * mail to train on (so the first backup of a store trains, and a store
 * too small then trains at a later run), and when an operator runs
 * `mailkeep repo dict train`.  A dictionary is never replaced in place:
 * a new one becomes current, the old ones stay for the blobs made with
 * them.
 *
 * Thread safety: the calls do blocking I/O; one thread per call.
 */
#ifndef MAILKEEP_DICT_H
#define MAILKEEP_DICT_H

#include <stdbool.h>
#include <stddef.h>

#include "mailkeep/err.h"
#include "mailkeep/repo.h"

enum mk_dict_mode {
	MK_DICT_OFF, /* compress without dictionaries */
	MK_DICT_AUTO, /* train when missing, use the current ones */
};

/* Sampling limits: enough for a good dictionary, quick to read. */
#define MK_DICT_SAMPLE_MESSAGES 8000
#define MK_DICT_SAMPLE_BYTES (16u << 20) /* per kind */
#define MK_DICT_CAPACITY (112u << 10)
/* Fewer samples than this train nothing worth having. */
#define MK_DICT_SAMPLES_MIN 64

/* What a training did, per kind (index enum mk_repo_dict_kind). */
struct mk_dict_result {
	size_t messages; /* message files read */
	size_t samples[MK_REPO_DICT_KINDS];
	bool trained[MK_REPO_DICT_KINDS];
	struct mk_repo_dict_info info[MK_REPO_DICT_KINDS];
	char why[MK_REPO_DICT_KINDS][MK_ERR_MSG_MAX]; /* when not trained */
};

/*
 * Sample the mailboxes relpaths[0..n) (Maildirs beneath rootfd, spread
 * evenly: at most MK_DICT_SAMPLE_MESSAGES messages in all), train a
 * dictionary of each kind (only_missing: of each kind the repository has
 * none of) and store them; they become current.  A kind with too little
 * mail is not trained (res->why says so): that is not an error.
 */
int mk_dict_train(struct mk_repo *repo, int rootfd, char *const *relpaths,
    size_t n, bool only_missing, struct mk_dict_result *res_r,
    struct mk_err *err);

/*
 * Before a backup run: load the repository's dictionaries and, in
 * MK_DICT_AUTO mode, train the missing kinds from these mailboxes.  A
 * training that fails is logged and the run goes on without (a
 * dictionary saves space; it is never needed).  In MK_DICT_OFF mode
 * new blobs use no dictionary.
 */
int mk_dict_prepare(struct mk_repo *repo, enum mk_dict_mode mode, int rootfd,
    char *const *relpaths, size_t n, struct mk_err *err);

#endif
