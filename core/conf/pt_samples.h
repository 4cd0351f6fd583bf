/*
 * pt_samples -- what a new store starts with, as a new APIM instance does:
 * the Starter product (a key required, 5 calls per 60 s and 100 calls per
 * week), the Unlimited product (approval required), both shown to the
 * built-in groups, an Echo API on the demo backend (conf/demo-backend.py)
 * in both, and a subscription to each for the administrator (the first user,
 * by id, in the group administrators) when there is one.
 *
 * Samples are written once in the life of a store, as if through the
 * management API (source "api"): they can be changed and deleted, and
 * nothing brings them back.  The store records that the question was
 * settled (its state "samples": 1 seeded, 0 not), in the same transaction as
 * the start that settled it.  Only a store with no entity at all before the
 * file is applied is new: a store written by an older version, which has
 * entities and no record, is settled as "not seeded".  What the file
 * declares wins: a sample whose id the file uses, or the Echo API when the
 * file has an API at its path, is left out.
 */
#ifndef PT_SAMPLES_H
#define PT_SAMPLES_H

#include "conf/pt_conf.h"
#include "conf/pt_store.h"

/* What the store was before this start applied the file. */
enum pt_samples_before {
    PT_SAMPLES_SETTLED, /* seeded or refused already: nothing to do */
    PT_SAMPLES_EMPTY,   /* no entity and no record: a new store */
    PT_SAMPLES_OLDER,   /* entities and no record: made before samples existed */
};

/* Looks at the store before the file's entities are applied (inside the start's transaction). */
enum pt_samples_before pt_samples_probe(struct pt_store *st);

/* After the file's entities are applied, in the same transaction: seeds the samples when the store
   was EMPTY and file->samples holds, and records the decision unless it was SETTLED.  false (errs
   filled) when the store cannot be written. */
bool pt_samples_settle(struct pt_store *st, const struct pt_conf *file, const char *secret_key,
                       enum pt_samples_before before, struct pt_errors *errs);

/* Whether `id` names a sample ("api" or "product") that a new store would have beside this file:
   only when cf->samples_assumed (the file checked alone) and cf->samples. */
bool pt_samples_known(const struct pt_conf *cf, const char *kind, const char *id);

#endif
