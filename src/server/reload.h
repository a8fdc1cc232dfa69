/* reload.h: configuration snapshots and live reload (SIGHUP, and `reload: {watch: true}`).
 *
 * A reload reads the file again and everything it names (listener certificates and keys, backend CA
 * bundles, local JWKS files), builds a complete new snapshot on the control thread and publishes it to
 * the workers; any error refuses the reload and the running configuration stays. Changes that only a
 * restart can apply (workers, listeners, listenBacklog, accessLog.path) refuse it too, each named.
 * The outcome of every attempt is kept in a struct reload_status that any thread may read (the admin
 * endpoint's /metrics and /status).
 */
#ifndef JWTGATE_RELOAD_H
#define JWTGATE_RELOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "config/config.h"

struct snapshot;
struct worker;
struct jwks_fetch;
struct health_check;

enum reload_outcome {
	RELOAD_OUTCOME_NONE = 0, /* no reload attempted yet */
	RELOAD_OUTCOME_OK,       /* the new configuration is in force */
	RELOAD_OUTCOME_REFUSED,  /* the running configuration stays; last_reason says why */
};

#define RELOAD_REASON_MAX 512 /* bound on the kept reason text; longer reasons are cut */

/* What /metrics (jwtgate_reloads_total{outcome}, jwtgate_config_generation) and /status show. */
struct reload_status {
	uint64_t generation; /* of the configuration in force: 1 at start-up, +1 per applied reload */
	uint64_t n_ok;       /* reloads applied since start */
	uint64_t n_refused;  /* reloads refused since start */
	enum reload_outcome last_outcome;
	int64_t last_attempt_ms;             /* wall clock, ms since the epoch; 0 = none yet */
	int64_t last_ok_ms;                  /* when the configuration in force was loaded */
	char last_trigger[16];               /* "SIGHUP" or "watch" */
	char last_reason[RELOAD_REASON_MAX]; /* the first error of the last refusal; "" after success */
	char config_path[RELOAD_REASON_MAX];
	bool is_watching; /* reload.watch in force and the inotify watches armed */
};

/* A consistent copy of the status; any thread (a mutex held for the copy, never on the request path). */
void reload_status_get(struct reload_status *out);
const char *reload_outcome_str(enum reload_outcome o); /* "none" "ok" "refused" */

/* Directories watched and the names in each that matter (the config file, every file it names, and
 * Kubernetes' "..data" symlink). Bounded by the number of files a configuration names. */
struct reload_watch_dir {
	int wd;
	char *dir;
	char **names;
	size_t n_names;
};

/* The control thread's reload machinery. */
struct reload {
	const char *path;         /* the first -c file or folder (messages) */
	const char *const *paths; /* every -c argument, loaded again on each reload */
	size_t n_paths;
	struct event_base *base;
	struct worker *workers;
	int n_workers;
	struct snapshot *current;      /* the configuration in force (one reference) */
	struct jwks_fetch *jwks;       /* remote JWKS fetchers of `current` (and the sets they replaced) */
	struct health_check *health;   /* active health checkers of `current` (NULL until started) */
	void (*on_applied)(void *arg); /* called after a new configuration went into force (may be NULL) */
	void *on_applied_arg;
	unsigned char fingerprint[32]; /* SHA-256 of the file and every file it names, as loaded */
	/* watch */
	int inotify_fd; /* -1 when not watching */
	struct event inotify_ev;
	struct event debounce_ev;
	int64_t pending_since_ms; /* first change not yet reloaded; 0 = none */
	struct reload_watch_dir *dirs;
	size_t n_dirs;
};

/* Builds the snapshot of cfg (taking it over, also on failure): router, key sets, listener and backend
 * TLS contexts (a listener's session ticket keys live in its store, tls.c, and so carry over).
 * Returns 0, or the number of problems (> 0, each written to err as one line). */
int reload_snapshot_build(struct config *cfg, FILE *err, struct snapshot **out);

/* Takes over current (generation 1) and jwks; records the start-up load in the status. */
void reload_init(struct reload *r, struct event_base *base, const char *path, struct snapshot *current,
                 struct jwks_fetch *jwks);
/* Every -c argument (after reload_init, which sets just path); paths must outlive r. */
void reload_set_paths(struct reload *r, const char *const *paths, size_t n_paths);
/* The workers that get each new snapshot (after they are started); arms the watch (reload.watch). */
void reload_set_workers(struct reload *r, struct worker *workers, int n_workers);
/* Loads the file and everything it names, checks, builds and publishes. trigger: "SIGHUP" or "watch"
 * (a watch-triggered reload of unchanged files does nothing). Returns 0 when applied (or unchanged),
 * JG_ERR_INVAL when refused (logged, kept in the status). */
int reload_run(struct reload *r, const char *trigger);
/* Arms or disarms the inotify watches after the configuration in force (reload.watch). Returns 0 or
 * -errno (logged; SIGHUP still works). */
int reload_watch_update(struct reload *r, const struct config *candidate);
/* Stops watching and drops the current snapshot and fetchers (after the workers are joined). */
void reload_fini(struct reload *r);

#endif
