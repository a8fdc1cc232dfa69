/* reload.c: configuration snapshots and live reload, on the control thread.
 *
 * A snapshot is everything the workers need that is built from the file once: config, router, key
 * sets and the TLS contexts (listener certificates and keys, backend CA bundles). A reload builds a
 * whole new one or nothing: the first error refuses it and the running snapshot stays, so a renewed
 * certificate with a wrong key, a truncated CA bundle or a broken JWKS never half-applies.
 *
 * With `reload: {watch: true}` the directories of the file and of every file it names are watched with
 * inotify (directories, not files: an editor's rename, certbot's symlink swap and Kubernetes'
 * atomic `..data` symlink swap replace the file rather than write it), and a burst of changes is
 * coalesced into one reload.
 */
#include "server/reload.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "jwt/auth.h"
#include "core/common.h"
#include "upstream/health.h"
#include "telemetry/stats.h"
#include "jwt/jwks_fetch.h"
#include "core/log.h"
#include "route/router.h"
#include "server/tls.h"
#include "upstream/upstream.h"
#include "server/worker.h"

/* A burst of changes (a ConfigMap update writes a folder, then swaps a symlink; an editor writes, then
 * renames) becomes one reload once the files are quiet this long, or at the latest after the cap. */
#define RELOAD_DEBOUNCE_MS     200
#define RELOAD_DEBOUNCE_CAP_MS 2000

/* Kubernetes mounts a ConfigMap or Secret as `..data -> ..<timestamp>` plus one symlink per key
 * through `..data`; an update writes a new timestamped folder and renames a new `..data` over the old
 * one (atomic). That rename is the event to see. */
#define RELOAD_K8S_DATA "..data"
#define RELOAD_DIR_ANY  "*" /* in a watched folder's names: any *.yaml or *.yml */

static pthread_mutex_t reload_status_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reload_status reload_status_now; /* under reload_status_lock */

static int64_t reload_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t reload_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void reload_status_get(struct reload_status *out)
{
	pthread_mutex_lock(&reload_status_lock);
	*out = reload_status_now;
	pthread_mutex_unlock(&reload_status_lock);
}

const char *reload_outcome_str(enum reload_outcome o)
{
	switch (o) {
	case RELOAD_OUTCOME_NONE:
		return "none";
	case RELOAD_OUTCOME_OK:
		return "ok";
	case RELOAD_OUTCOME_REFUSED:
		return "refused";
	}
	return "?";
}

static void reload_status_record(enum reload_outcome o, const char *trigger, const char *reason,
                                 uint64_t generation, bool is_watching)
{
	int64_t now = reload_wall_ms();

	pthread_mutex_lock(&reload_status_lock);
	reload_status_now.last_outcome = o;
	reload_status_now.last_attempt_ms = now;
	snprintf(reload_status_now.last_trigger, sizeof(reload_status_now.last_trigger), "%s", trigger);
	snprintf(reload_status_now.last_reason, sizeof(reload_status_now.last_reason), "%s",
	         reason != NULL ? reason : "");
	if (o == RELOAD_OUTCOME_OK) {
		reload_status_now.n_ok++;
		reload_status_now.generation = generation;
		reload_status_now.last_ok_ms = now;
	} else {
		reload_status_now.n_refused++;
	}
	reload_status_now.is_watching = is_watching;
	pthread_mutex_unlock(&reload_status_lock);
}

/* ---- the files a configuration names ---- */

/* Calls fn for the file itself and every file it names, in a fixed order. */
static void reload_for_each_file(const struct config *cfg, void (*fn)(const char *path, void *arg), void *arg)
{
	size_t i, j;

	for (i = 0; i < cfg->n_sources; i++)
		fn(cfg->sources[i], arg);
	for (i = 0; i < cfg->n_listeners; i++) {
		if (!cfg->listeners[i].has_tls || cfg->listeners[i].tls_cert_file == NULL)
			continue; /* inline PEM: in the configuration file itself */
		fn(cfg->listeners[i].tls_cert_file, arg);
		fn(cfg->listeners[i].tls_key_file, arg);
	}
	for (i = 0; i < cfg->n_backends; i++)
		for (j = 0; j < cfg->backends[i].tls.n_ca_files; j++)
			fn(cfg->backends[i].tls.ca_files[j], arg);
	for (i = 0; i < cfg->n_policies; i++) {
		for (j = 0; j < cfg->policies[i].n_providers; j++) {
			const struct config_provider *p = &cfg->policies[i].providers[j];

			/* The content of a local JWKS file is read by config_load (origin = its path). */
			if (p->jwks_source == CONFIG_JWKS_LOCAL && p->local_jwks_origin != NULL &&
			    strcmp(p->local_jwks_origin, "inline") != 0)
				fn(p->local_jwks_origin, arg);
		}
	}
}

struct reload_digest {
	EVP_MD_CTX *md;
	bool is_ok;
};

/* Hashes the name, then the content (or the errno of a file that cannot be read), streamed in
 * fixed-size chunks whatever the file size. */
static void reload_digest_file(const char *path, void *arg)
{
	struct reload_digest *d = arg;
	unsigned char buf[16384];
	FILE *f;
	size_t n;

	if (EVP_DigestUpdate(d->md, path, strlen(path) + 1) != 1)
		d->is_ok = false;
	f = fopen(path, "rbe");
	if (f == NULL) {
		int e = errno;

		if (EVP_DigestUpdate(d->md, &e, sizeof(e)) != 1)
			d->is_ok = false;
		return;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (EVP_DigestUpdate(d->md, buf, n) != 1)
			d->is_ok = false;
	if (ferror(f))
		d->is_ok = false;
	fclose(f);
}

/* SHA-256 over the files cfg names, as they are now. Returns 0, or JG_ERR_IO when the digest could
 * not be computed (then the caller treats the files as changed). */
static int reload_fingerprint(const struct config *cfg, unsigned char out[32])
{
	struct reload_digest d = {EVP_MD_CTX_new(), true};
	unsigned int len = 0;

	if (d.md == NULL)
		return JG_ERR_NOMEM;
	if (EVP_DigestInit_ex(d.md, EVP_sha256(), NULL) != 1)
		d.is_ok = false;
	if (d.is_ok)
		reload_for_each_file(cfg, reload_digest_file, &d);
	if (d.is_ok && (EVP_DigestFinal_ex(d.md, out, &len) != 1 || len != 32))
		d.is_ok = false;
	EVP_MD_CTX_free(d.md);
	return d.is_ok ? 0 : JG_ERR_IO;
}

struct reload_names {
	const char **v;
	size_t n, cap;
};

static void reload_collect_name(const char *path, void *arg)
{
	struct reload_names *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = jg_xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = path;
}

/* True when a and b name the same files in the same order. */
static bool reload_same_files(const struct config *a, const struct config *b)
{
	struct reload_names x = {0}, y = {0};
	bool same;
	size_t i;

	reload_for_each_file(a, reload_collect_name, &x);
	reload_for_each_file(b, reload_collect_name, &y);
	same = x.n == y.n;
	for (i = 0; same && i < x.n; i++)
		same = strcmp(x.v[i], y.v[i]) == 0;
	free(x.v);
	free(y.v);
	return same;
}

/* ---- snapshots ---- */

int reload_snapshot_build(struct config *cfg, FILE *err, struct snapshot **out)
{
	struct auth_shared *auth;
	struct snapshot *snap;
	int bad = 0;
	size_t i;

	*out = NULL;
	auth = auth_shared_new(cfg, err);
	if (auth == NULL) {
		config_free(cfg);
		return 1;
	}
	snap = snapshot_new(cfg, router_new(cfg), auth);
	for (i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];

		if (!l->has_tls)
			continue;
		/* Listeners are the same in both (reload_check_restart_only), index for index. */
		snap->listener_tls[i] = tls_server_ctx_new(l, err);
		if (snap->listener_tls[i] == NULL)
			bad++;
	}
	for (i = 0; i < cfg->n_backends; i++) {
		const struct config_backend *be = &cfg->backends[i];

		if (!be->tls.enabled && be->protocol != CONFIG_PROTO_H2)
			continue;
		snap->backend_tls[i] = upstream_tls_ctx_new(be, err);
		if (snap->backend_tls[i] == NULL)
			bad++;
	}
	if (bad > 0) {
		snapshot_unref(snap);
		return bad;
	}
	*out = snap;
	return 0;
}

/* ---- what only a restart applies ---- */

static const struct config_listener *reload_find_listener(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->n_listeners; i++)
		if (strcmp(cfg->listeners[i].name, name) == 0)
			return &cfg->listeners[i];
	return NULL;
}

static bool reload_str_equal(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The one place that knows what a reload cannot change: the worker threads and the listening
 * sockets are made once at start (each worker binds its own SO_REUSEPORT socket per listener before
 * any thread starts), and the access log is opened once. Writes one line per change to err, naming
 * it; returns how many. */
static int reload_check_restart_only(const struct config *run, const struct config *next, FILE *err)
{
	int bad = 0;
	size_t i;

	if (next->workers != run->workers) {
		fprintf(err, "workers: %d -> %d needs a restart; running configuration kept\n", run->workers,
		        next->workers);
		bad++;
	}
	if (next->limits.listen_backlog != run->limits.listen_backlog) {
		fprintf(err,
		        "limits.listenBacklog: %u -> %u needs a restart (the sockets listen once); running "
		        "configuration kept\n",
		        run->limits.listen_backlog, next->limits.listen_backlog);
		bad++;
	}
	if (next->has_admin != run->has_admin || next->admin_addr_len != run->admin_addr_len ||
	    memcmp(&next->admin_addr, &run->admin_addr, next->admin_addr_len) != 0) {
		fprintf(err,
		        "admin: the admin endpoint's address needs a restart; running configuration kept\n");
		bad++;
	}
	if (!reload_str_equal(run->access_log_path, next->access_log_path)) {
		fprintf(err, "accessLog.path: %s -> %s needs a restart; running configuration kept\n",
		        run->access_log_path ? run->access_log_path : "(none)",
		        next->access_log_path ? next->access_log_path : "(none)");
		bad++;
	}
	if (run->access_log_path != NULL && next->access_log_buffer != run->access_log_buffer) {
		/* The log writer's per-worker buffers are allocated once, at start (log_writer.h). */
		fprintf(err,
		        "accessLog.bufferSize: %llu -> %llu needs a restart; running configuration kept\n",
		        (unsigned long long)run->access_log_buffer,
		        (unsigned long long)next->access_log_buffer);
		bad++;
	}
	for (i = 0; i < next->n_listeners; i++) {
		const struct config_listener *y = &next->listeners[i];
		const struct config_listener *x = reload_find_listener(run, y->name);

		if (x == NULL) {
			fprintf(err, "listener %s (%s) added: needs a restart; running configuration kept\n",
			        y->name, y->address_text);
			bad++;
		} else if (x->addr_len != y->addr_len || memcmp(&x->addr, &y->addr, x->addr_len) != 0) {
			fprintf(err,
			        "listener %s: address %s -> %s needs a restart; running configuration kept\n",
			        y->name, x->address_text, y->address_text);
			bad++;
		} else if (x->has_tls != y->has_tls) {
			fprintf(err, "listener %s: tls %s needs a restart; running configuration kept\n",
			        y->name, y->has_tls ? "added" : "removed");
			bad++;
		} else if (x->has_tls && x->tls_ticket_rotation_ms != y->tls_ticket_rotation_ms) {
			/* The listener's ticket key store lives as long as the process (tls.c). */
			fprintf(err,
			        "listener %s: tls.ticketKeyRotation needs a restart; running configuration "
			        "kept\n",
			        y->name);
			bad++;
		} else if (x->index != y->index) {
			fprintf(err,
			        "listener %s: moved from position %d to %d in the list; keep the order (a "
			        "restart applies a new one); running configuration kept\n",
			        y->name, x->index + 1, y->index + 1);
			bad++;
		}
	}
	for (i = 0; i < run->n_listeners; i++) {
		const struct config_listener *x = &run->listeners[i];

		if (reload_find_listener(next, x->name) == NULL) {
			fprintf(err,
			        "listener %s (%s) removed: needs a restart; running configuration kept\n",
			        x->name, x->address_text);
			bad++;
		}
	}
	return bad;
}

/* ---- one reload ---- */

/* Logs every line of the captured error text and keeps the first (with a count of the others) as
 * the reason. text may be NULL (nothing captured). */
static void reload_refuse(struct reload *r, const char *trigger, const char *what, char *text)
{
	char reason[RELOAD_REASON_MAX];
	char *line, *save = NULL;
	int n = 0;
	const char *first = NULL;

	if (text != NULL) {
		for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, "jwtgate: ", 9) == 0)
				line += 9;
			if (*line == '\0')
				continue;
			log_error("reload refused: %s", line);
			if (first == NULL)
				first = line;
			n++;
		}
	}
	if (first == NULL)
		snprintf(reason, sizeof(reason), "%s", what);
	else if (n > 1)
		snprintf(reason, sizeof(reason), "%s (and %d more)", first, n - 1);
	else
		snprintf(reason, sizeof(reason), "%s", first);
	log_error("reload (%s) refused: %s; the running configuration (generation %llu) stays", trigger, what,
	          (unsigned long long)r->current->generation);
	reload_status_record(RELOAD_OUTCOME_REFUSED, trigger, reason, r->current->generation,
	                     r->inotify_fd >= 0);
}

/* An in-memory stream for error lines (bounded by the number of errors config_load reports). */
struct reload_errbuf {
	char *text;
	size_t len;
	FILE *f;
};

static FILE *reload_errbuf_open(struct reload_errbuf *b)
{
	b->text = NULL;
	b->len = 0;
	b->f = open_memstream(&b->text, &b->len);
	return b->f != NULL ? b->f : stderr;
}

/* Ends the stream; returns its text (caller frees) or NULL. */
static char *reload_errbuf_close(struct reload_errbuf *b)
{
	if (b->f == NULL)
		return NULL;
	fclose(b->f);
	b->f = NULL;
	return b->text;
}

int reload_run(struct reload *r, const char *trigger)
{
	struct reload_errbuf eb;
	struct config *cfg = NULL;
	struct snapshot *snap = NULL;
	struct jwks_fetch *jwks;
	struct health_check *health;
	unsigned char before[32];
	bool has_before, is_same_files;
	char *text;
	int rc, i;

	/* The files as they are before the load: a change that lands during the load then differs from
	 * this fingerprint, and its event reloads again. */
	has_before = reload_fingerprint(r->current->cfg, before) == 0;
	rc = config_load_many(r->paths, r->n_paths, reload_errbuf_open(&eb), &cfg);
	text = reload_errbuf_close(&eb);
	if (rc != 0) {
		char what[128];

		if (rc > 0)
			snprintf(what, sizeof(what), "%s has %d error%s", r->path, rc, rc == 1 ? "" : "s");
		else
			snprintf(what, sizeof(what), "%s cannot be read: %s", r->path,
			         strerror(rc > -1000 ? -rc : EIO));
		reload_refuse(r, trigger, what, text);
		free(text);
		return JG_ERR_INVAL;
	}
	free(text);
	is_same_files = reload_same_files(r->current->cfg, cfg);
	if (strcmp(trigger, "watch") == 0 && is_same_files && has_before &&
	    memcmp(before, r->fingerprint, sizeof(before)) == 0) {
		/* A touch, a watched folder's other files, the old ConfigMap folder going away. */
		log_debug("reload (watch): no file changed; nothing to do");
		config_free(cfg);
		reload_watch_update(r, NULL);
		return 0;
	}
	rc = reload_check_restart_only(r->current->cfg, cfg, reload_errbuf_open(&eb));
	text = reload_errbuf_close(&eb);
	if (rc != 0) {
		reload_refuse(r, trigger, "a change needs a restart", text);
		free(text);
		/* Keep watching the files the refused configuration names too: the missing piece may
		 * arrive later. */
		reload_watch_update(r, cfg);
		config_free(cfg);
		return JG_ERR_INVAL;
	}
	free(text);
	reload_watch_update(r, cfg); /* before cfg goes into the snapshot (freed on failure) */
	rc = reload_snapshot_build(cfg, reload_errbuf_open(&eb), &snap);
	text = reload_errbuf_close(&eb);
	if (rc != 0) {
		reload_refuse(r, trigger, "a file it names could not be loaded", text);
		free(text);
		return JG_ERR_INVAL;
	}
	free(text);
	snap->generation = r->current->generation + 1;
	cfg = snap->cfg;
	/* Counters of the new generation start at zero (stats.h). */
	snap->stats = stats_gen_new(cfg, r->n_workers);
	log_set_level((enum log_level)cfg->log_level);
	/* New fetchers for the new key sets, seeded with the keys already fetched; the old set stops
	 * before the old snapshot can go away. Done before any worker sees the new snapshot. */
	jwks = jwks_fetch_new(r->base, cfg, snap->auth);
	jwks_fetch_replace(jwks, r->jwks);
	r->jwks = jwks;
	jwks_fetch_start(jwks, NULL, NULL);
	/* Checkers for the new configuration write into its verdicts, starting from the old verdicts of
	 * the same endpoints; the old checkers stop (the old verdicts stay with the old snapshot for the
	 * requests still on it). */
	health = health_check_new(r->base, cfg, snap->health);
	health_check_replace(health, r->health);
	r->health = health;
	health_check_start(health);
	for (i = 0; i < r->n_workers; i++)
		worker_reload(&r->workers[i], snapshot_ref(snap));
	snapshot_unref(r->current);
	r->current = snap;
	if (r->on_applied != NULL)
		r->on_applied(r->on_applied_arg);
	if (is_same_files && has_before)
		memcpy(r->fingerprint, before, sizeof(before));
	else
		memset(r->fingerprint, 0, sizeof(r->fingerprint)); /* unknown: the next change reloads */
	reload_watch_update(r, NULL);
	reload_status_record(RELOAD_OUTCOME_OK, trigger, NULL, snap->generation, r->inotify_fd >= 0);
	log_info("configuration reloaded from %s (%s, generation %llu)", r->path, trigger,
	         (unsigned long long)snap->generation);
	return 0;
}

/* ---- watching ---- */

static void reload_on_debounce(evutil_socket_t fd, short what, void *arg)
{
	struct reload *r = arg;

	r->pending_since_ms = 0;
	reload_run(r, "watch");
}

static void reload_schedule(struct reload *r)
{
	int64_t now = reload_mono_ms();
	struct timeval tv = {0, RELOAD_DEBOUNCE_MS * 1000};

	if (r->pending_since_ms == 0)
		r->pending_since_ms = now;
	else if (now - r->pending_since_ms >= RELOAD_DEBOUNCE_CAP_MS)
		return; /* a steady stream of writes must not postpone the reload for ever */
	evtimer_add(&r->debounce_ev, &tv);
}

static struct reload_watch_dir *reload_find_wd(struct reload *r, int wd)
{
	size_t i;

	for (i = 0; i < r->n_dirs; i++)
		if (r->dirs[i].wd == wd)
			return &r->dirs[i];
	return NULL;
}

static bool reload_dir_has_name(const struct reload_watch_dir *d, const char *name)
{
	size_t i;

	for (i = 0; i < d->n_names; i++) {
		size_t len = strlen(name);

		if (strcmp(d->names[i], name) == 0)
			return true;
		/* RELOAD_DIR_ANY: a -c folder, where any *.yaml / *.yml may come or go */
		if (strcmp(d->names[i], RELOAD_DIR_ANY) == 0 && name[0] != '.' &&
		    ((len > 5 && strcmp(name + len - 5, ".yaml") == 0) ||
		     (len > 4 && strcmp(name + len - 4, ".yml") == 0)))
			return true;
	}
	return false;
}

static void reload_on_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct reload *r = arg;
	/* Aligned for struct inotify_event; room for several events with names up to NAME_MAX. */
	char buf[8 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
	        __attribute__((aligned(__alignof__(struct inotify_event))));
	bool is_relevant = false;
	ssize_t n;
	size_t off;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (off = 0; off + sizeof(struct inotify_event) <= (size_t)n;) {
			const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
			struct reload_watch_dir *d = reload_find_wd(r, ev->wd);

			off += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				is_relevant = true; /* events were lost: assume the worst */
				continue;
			}
			if (d == NULL)
				continue;
			if (ev->mask & IN_IGNORED) {
				d->wd = -1; /* the folder is gone (an old ConfigMap folder); forget its watch
				             */
				continue;
			}
			if (ev->len > 0 &&
			    (reload_dir_has_name(d, ev->name) || strcmp(ev->name, RELOAD_K8S_DATA) == 0)) {
				log_debug("reload: %s/%s changed (inotify mask 0x%x)", d->dir, ev->name,
				          (unsigned)ev->mask);
				is_relevant = true;
			}
		}
	}
	if (is_relevant)
		reload_schedule(r);
}

struct reload_watch_build {
	struct reload *r;
	struct reload_watch_dir *dirs;
	size_t n, cap;
};

/* Watches the folder of path (a no-op when already watched) and records the name in it. */
static void reload_watch_add(struct reload_watch_build *b, const char *dir, const char *name)
{
	const uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM;
	struct reload_watch_dir *d = NULL;
	size_t i;
	int wd;

	wd = inotify_add_watch(b->r->inotify_fd, dir, mask);
	if (wd == -1) {
		log_warn("reload.watch: cannot watch %s: %s; changes to %s there are not seen", dir,
		         strerror(errno), name);
		return;
	}
	for (i = 0; i < b->n; i++)
		if (b->dirs[i].wd == wd)
			d = &b->dirs[i];
	if (d == NULL) {
		if (b->n == b->cap) {
			b->cap = b->cap ? b->cap * 2 : 8;
			b->dirs = jg_xrealloc(b->dirs, b->cap * sizeof(*b->dirs));
		}
		d = &b->dirs[b->n++];
		memset(d, 0, sizeof(*d));
		d->wd = wd;
		d->dir = jg_xstrdup(dir);
	}
	if (reload_dir_has_name(d, name))
		return;
	d->names = jg_xrealloc(d->names, (d->n_names + 1) * sizeof(*d->names));
	d->names[d->n_names++] = jg_xstrdup(name);
}

/* The file's own folder, and the folder of what it resolves to when it is (or passes through) a
 * symbolic link: then an in-place change of the target is seen too. */
static void reload_watch_file(const char *path, void *arg)
{
	struct reload_watch_build *b = arg;
	char *copy = jg_xstrdup(path);
	char *slash = strrchr(copy, '/');
	char *real;

	if (slash == NULL)
		reload_watch_add(b, ".", copy);
	else if (slash == copy)
		reload_watch_add(b, "/", slash + 1);
	else {
		*slash = '\0';
		reload_watch_add(b, copy, slash + 1);
	}
	free(copy);
	real = realpath(path, NULL);
	if (real != NULL && strcmp(real, path) != 0) {
		slash = strrchr(real, '/');
		if (slash != NULL && slash != real) {
			*slash = '\0';
			reload_watch_add(b, real, slash + 1);
		}
	}
	free(real);
}

static void reload_watch_dirs_free(struct reload_watch_dir *dirs, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		for (j = 0; j < dirs[i].n_names; j++)
			free(dirs[i].names[j]);
		free(dirs[i].names);
		free(dirs[i].dir);
	}
	free(dirs);
}

static void reload_watch_stop(struct reload *r)
{
	if (r->inotify_fd < 0)
		return;
	event_del(&r->inotify_ev);
	event_del(&r->debounce_ev);
	close(r->inotify_fd);
	r->inotify_fd = -1;
	reload_watch_dirs_free(r->dirs, r->n_dirs);
	r->dirs = NULL;
	r->n_dirs = 0;
	r->pending_since_ms = 0;
}

int reload_watch_update(struct reload *r, const struct config *candidate)
{
	struct reload_watch_build b = {r, NULL, 0, 0};
	size_t i, j;

	if (!r->current->cfg->reload_watch && (candidate == NULL || !candidate->reload_watch)) {
		if (r->inotify_fd >= 0)
			log_info("reload.watch: off; no longer watching the configuration files");
		reload_watch_stop(r);
		return 0;
	}
	if (r->inotify_fd < 0) {
		r->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (r->inotify_fd == -1) {
			int e = errno;

			log_error("reload.watch: inotify: %s; only SIGHUP reloads", strerror(e));
			return -e;
		}
		event_assign(&r->inotify_ev, r->base, r->inotify_fd, EV_READ | EV_PERSIST, reload_on_inotify,
		             r);
		evtimer_assign(&r->debounce_ev, r->base, reload_on_debounce, r);
		event_add(&r->inotify_ev, NULL);
		log_info("reload.watch: watching %s and the files it names", r->path);
	}
	/* Re-armed after every attempt: the files named may have changed, and a watched folder may have
	 * been replaced (inotify_add_watch of a folder already watched returns its descriptor). */
	reload_for_each_file(r->current->cfg, reload_watch_file, &b);
	if (candidate != NULL)
		reload_for_each_file(candidate, reload_watch_file, &b);
	for (i = 0; i < r->current->cfg->n_source_dirs; i++)
		reload_watch_add(&b, r->current->cfg->source_dirs[i], RELOAD_DIR_ANY);
	for (i = 0; i < r->n_dirs; i++) {
		bool is_kept = false;

		for (j = 0; j < b.n && !is_kept; j++)
			is_kept = b.dirs[j].wd == r->dirs[i].wd;
		if (!is_kept && r->dirs[i].wd >= 0)
			inotify_rm_watch(r->inotify_fd, r->dirs[i].wd);
	}
	reload_watch_dirs_free(r->dirs, r->n_dirs);
	r->dirs = b.dirs;
	r->n_dirs = b.n;
	return 0;
}

/* ---- set-up ---- */

void reload_init(struct reload *r, struct event_base *base, const char *path, struct snapshot *current,
                 struct jwks_fetch *jwks)
{
	memset(r, 0, sizeof(*r));
	r->path = path;
	r->paths = &r->path;
	r->n_paths = 1;
	r->base = base;
	r->current = current;
	r->jwks = jwks;
	r->inotify_fd = -1;
	current->generation = 1;
	if (reload_fingerprint(current->cfg, r->fingerprint) != 0)
		memset(r->fingerprint, 0, sizeof(r->fingerprint));
	pthread_mutex_lock(&reload_status_lock);
	memset(&reload_status_now, 0, sizeof(reload_status_now));
	reload_status_now.generation = 1;
	reload_status_now.last_ok_ms = reload_wall_ms();
	snprintf(reload_status_now.config_path, sizeof(reload_status_now.config_path), "%s", path);
	pthread_mutex_unlock(&reload_status_lock);
}

void reload_set_paths(struct reload *r, const char *const *paths, size_t n_paths)
{
	r->paths = paths;
	r->n_paths = n_paths;
}

void reload_set_workers(struct reload *r, struct worker *workers, int n_workers)
{
	r->workers = workers;
	r->n_workers = n_workers;
	/* Watch only now: a reload needs the workers it hands the snapshot to. */
	reload_watch_update(r, NULL);
	pthread_mutex_lock(&reload_status_lock);
	reload_status_now.is_watching = r->inotify_fd >= 0;
	pthread_mutex_unlock(&reload_status_lock);
}

void reload_fini(struct reload *r)
{
	reload_watch_stop(r);
	health_check_free(r->health);
	r->health = NULL;
	jwks_fetch_free(r->jwks);
	r->jwks = NULL;
	snapshot_unref(r->current);
	r->current = NULL;
}
