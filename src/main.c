/* main.c: command line, configuration, worker threads, signals. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "jwtgate/auth.h"
#include "jwtgate/common.h"
#include "jwtgate/config.h"
#include "jwtgate/jwks_fetch.h"
#include "jwtgate/log.h"
#include "jwtgate/router.h"
#include "jwtgate/worker.h"

static void main_usage(FILE *f)
{
	fprintf(f, "usage: jwtgate -c FILE [--check]\n"
	           "       jwtgate --version | --help\n"
	           "\n"
	           "  -c, --config FILE  configuration file (YAML, see jwtgate.yaml(5))\n"
	           "  -t, --check        validate the configuration, print every error, exit 0 or 1\n"
	           "  -v, --version      print the version and exit\n"
	           "  -h, --help         print this help and exit\n"
	           "\n"
	           "Signals: SIGTERM/SIGINT stop accepting, finish in-flight requests (limits.drainTimeout), "
	           "exit 0.\n");
}

struct main_state {
	struct worker *workers;
	int n_workers;
	struct event_base *base;
	int signalled;
	bool waiting_first_fetches; /* main_wait_first_fetches is running the control loop */
	const char *path;
	struct snapshot *current;
	struct jwks_fetch *jwks; /* remote JWKS fetchers of `current` (and the sets they replaced) */
};

/* Listeners cannot change on reload: their sockets are bound once (a restart applies such a change). */
static bool main_listeners_equal(const struct config *a, const struct config *b)
{
	size_t i;

	if (a->n_listeners != b->n_listeners)
		return false;
	for (i = 0; i < a->n_listeners; i++) {
		const struct config_listener *x = &a->listeners[i], *y = &b->listeners[i];

		if (strcmp(x->name, y->name) != 0 || x->addr_len != y->addr_len ||
		    memcmp(&x->addr, &y->addr, x->addr_len) != 0 || x->has_tls != y->has_tls)
			return false;
	}
	return true;
}

/* SIGHUP: load and check the file; a file with errors is refused and the running configuration
 * stays. Workers switch at their next request; requests in flight finish on the old one. */
static void main_reload(struct main_state *st)
{
	struct config *cfg = NULL;
	struct router *router;
	struct auth_shared *auth;
	struct snapshot *snap;
	struct jwks_fetch *jwks;
	int rc, i;

	rc = config_load(st->path, stderr, &cfg);
	if (rc != 0) {
		log_error("reload refused: %s has %d error%s; the running configuration stays", st->path,
		          rc > 0 ? rc : 1, rc == 1 ? "" : "s");
		return;
	}
	if (!main_listeners_equal(cfg, st->current->cfg)) {
		log_error("reload refused: listeners changed; restart jwtgate to apply that");
		config_free(cfg);
		return;
	}
	if (cfg->workers != st->current->cfg->workers)
		log_warn("reload: workers changes need a restart; keeping %d", st->n_workers);
	if (cfg->limits.listen_backlog != st->current->cfg->limits.listen_backlog)
		log_warn("reload: limits.listenBacklog changes need a restart (the sockets listen once); "
		         "keeping %u",
		         st->current->cfg->limits.listen_backlog);
	auth = auth_shared_new(cfg, stderr);
	if (auth == NULL) {
		log_error(
		        "reload refused: JWT key sets could not be loaded; the running configuration stays");
		config_free(cfg);
		return;
	}
	router = router_new(cfg);
	snap = snapshot_new(cfg, router, auth);
	log_set_level((enum log_level)cfg->log_level);
	/* New fetchers for the new key sets, seeded with the keys already fetched; the old set stops
	 * before the old snapshot can go away. Done before any worker sees the new snapshot. */
	jwks = jwks_fetch_new(st->base, cfg, auth);
	jwks_fetch_replace(jwks, st->jwks);
	st->jwks = jwks;
	jwks_fetch_start(jwks, NULL, NULL);
	for (i = 0; i < st->n_workers; i++)
		worker_reload(&st->workers[i], snapshot_ref(snap));
	snapshot_unref(st->current);
	st->current = snap;
	log_info("configuration reloaded from %s", st->path);
}

static void main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *st = arg;
	int i;

	if (sig == SIGHUP) {
		if (!st->signalled)
			main_reload(st);
		return;
	}
	if (st->signalled++) {
		log_warn("second signal: exiting now");
		exit(0);
	}
	log_info("signal %d: draining", (int)sig);
	for (i = 0; i < st->n_workers; i++)
		worker_request_stop(&st->workers[i]);
	event_base_loopexit(st->base, NULL);
}

static void main_on_first_fetches(void *arg)
{
	struct main_state *st = arg;

	/* Only the start-up wait may be ended here: once the bound has passed and the proxy runs, the
	 * first fetches finishing late must not stop the control loop (it would then wait for workers
	 * that were never asked to stop, and no longer see signals). */
	if (st->waiting_first_fetches)
		event_base_loopbreak(st->base);
}

static void main_on_startup_bound(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *st = arg;

	if (!st->waiting_first_fetches)
		return;
	log_warn("start-up: the first remote JWKS fetches are not finished; opening the listeners now (a "
	         "provider without keys answers 401 until its fetch succeeds)");
	event_base_loopbreak(st->base);
}

/* Runs the control loop until every remote JWKS has finished its first fetch (success, or failure
 * with its retries spent) or the start-up bound passes, so listeners open with keys in place
 * (DESIGN.md "JWT stage"). A signal ends the wait too (st->signalled tells). */
static void main_wait_first_fetches(struct main_state *st, struct jwks_fetch *jf)
{
	struct event *bound;
	struct timeval tv;
	uint64_t ms;

	if (jwks_fetch_count(jf) == 0)
		return;
	ms = jwks_fetch_startup_bound_ms(jf);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	bound = evtimer_new(st->base, main_on_startup_bound, st);
	if (bound != NULL)
		evtimer_add(bound, &tv);
	jwks_fetch_start(jf, main_on_first_fetches, st);
	/* A loopbreak before dispatch is forgotten by libevent: test first. */
	st->waiting_first_fetches = true;
	if (!jwks_fetch_first_done(jf) && bound != NULL)
		event_base_dispatch(st->base);
	st->waiting_first_fetches = false;
	if (bound != NULL)
		event_free(bound);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"check", no_argument, NULL, 't'},
	        {"version", no_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool check = false;
	struct config *cfg = NULL;
	struct auth_shared *auth = NULL;
	struct main_state st;
	struct event *sigs[4] = {NULL, NULL, NULL, NULL};
	int signums[4] = {SIGTERM, SIGINT, SIGHUP, 0};
	FILE *access_log = NULL;
	int **fds = NULL;
	int opt, rc, i, n_fds = 0, exit_code = 1, backlog, somaxconn;
	size_t k;

	memset(&st, 0, sizeof(st));
	while ((opt = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'v':
			printf("jwtgate %s\n", JG_VERSION);
			return 0;
		case 'h':
			main_usage(stdout);
			return 0;
		default:
			main_usage(stderr);
			return 1;
		}
	}
	if (path == NULL || optind != argc) {
		fprintf(stderr, "jwtgate: %s\n", path == NULL ? "missing -c FILE" : "unexpected argument");
		main_usage(stderr);
		return 1;
	}
	rc = config_load(path, stderr, &cfg);
	if (rc != 0) {
		if (rc > 0)
			fprintf(stderr, "jwtgate: %s: %d error%s\n", path, rc, rc == 1 ? "" : "s");
		else
			fprintf(stderr, "jwtgate: %s: cannot read: %s\n", path,
			        strerror(rc > -1000 ? -rc : EIO));
		return 1;
	}
	log_set_level((enum log_level)cfg->log_level);
	auth = auth_shared_new(cfg, stderr);
	if (auth == NULL) {
		fprintf(stderr, "jwtgate: %s: JWT key sets could not be loaded\n", path);
		config_free(cfg);
		return 1;
	}
	if (check) {
		printf("jwtgate: %s: configuration OK\n", path);
		auth_shared_free(auth);
		config_free(cfg);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	/* Per-request buffers come and go all the time: keep freed memory in the workers' malloc arenas
	 * instead of shrinking and regrowing them (each cycle is an mprotect and a round of page faults,
	 * which showed up in the latency tail). The memory a worker keeps is bounded by its peak. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_TOP_PAD, 4 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	evthread_use_pthreads();
	log_hook_libevent();
	st.path = path;
	st.current = snapshot_new(cfg, router_new(cfg), auth);
	if (cfg->access_log_path != NULL) {
		if (strcmp(cfg->access_log_path, "stdout") == 0)
			access_log = stdout;
		else if (strcmp(cfg->access_log_path, "stderr") == 0)
			access_log = stderr;
		else
			access_log = fopen(cfg->access_log_path, "a");
		if (access_log == NULL) {
			fprintf(stderr, "jwtgate: accessLog %s: %s\n", cfg->access_log_path, strerror(errno));
			goto out;
		}
		setvbuf(access_log, NULL, _IOLBF, 0);
	}

	/* The control base comes first: the remote JWKS fetchers run on it before any listener opens. */
	st.base = event_base_new();
	if (st.base == NULL) {
		fprintf(stderr, "jwtgate: cannot create the control event loop\n");
		goto out;
	}
	for (i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(st.base, signums[i], main_on_signal, &st);
		evsignal_add(sigs[i], NULL);
	}
	if (cfg->has_admin)
		log_warn("admin: the admin endpoint (readiness, metrics) is not served by this version; the "
		         "block is validated and ignored");
	st.jwks = jwks_fetch_new(st.base, cfg, auth);
	main_wait_first_fetches(&st, st.jwks);
	if (st.signalled) {
		exit_code = 0;
		goto out;
	}

	st.n_workers = cfg->workers;
	st.workers = jg_xcalloc((size_t)st.n_workers, sizeof(*st.workers));
	fds = jg_xcalloc((size_t)st.n_workers, sizeof(*fds));
	/* Bind every socket before any thread starts, so a busy port fails the start cleanly. */
	for (n_fds = 0; n_fds < st.n_workers; n_fds++) {
		fds[n_fds] = jg_xcalloc(cfg->n_listeners, sizeof(int));
		for (k = 0; k < cfg->n_listeners; k++)
			fds[n_fds][k] = -1;
		if (worker_open_listen_sockets(cfg, fds[n_fds], stderr) < 0) {
			n_fds++;
			goto out;
		}
	}
	for (i = 0; i < st.n_workers; i++) {
		if (worker_init(&st.workers[i], i, st.current, fds[i], access_log) < 0) {
			fprintf(stderr, "jwtgate: worker %d: initialisation failed\n", i);
			goto out;
		}
	}
	for (i = 0; i < st.n_workers; i++)
		worker_start(&st.workers[i]);
	backlog = worker_listen_backlog(cfg, &somaxconn);
	for (k = 0; k < cfg->n_listeners; k++)
		log_info("listening on %s (%s) with %d worker%s, backlog %d (limits.listenBacklog %u, "
		         "net.core.somaxconn %d)",
		         cfg->listeners[k].address_text, cfg->listeners[k].name, st.n_workers,
		         st.n_workers == 1 ? "" : "s", backlog, cfg->limits.listen_backlog, somaxconn);

	event_base_dispatch(st.base);

	for (i = 0; i < st.n_workers; i++)
		worker_join(&st.workers[i]);
	log_info("stopped");
	for (i = 0; i < st.n_workers; i++)
		worker_free(&st.workers[i]);
	exit_code = 0;
out:
	/* Workers are joined (or never started): the fetchers' hook can no longer be called. */
	for (i = 0; signums[i] != 0; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	jwks_fetch_free(st.jwks);
	if (st.base != NULL)
		event_base_free(st.base);
	for (i = 0; i < n_fds; i++) {
		for (k = 0; k < st.current->cfg->n_listeners; k++)
			if (fds[i][k] >= 0)
				close(fds[i][k]);
		free(fds[i]);
	}
	free(fds);
	free(st.workers);
	if (access_log != NULL)
		fflush(access_log);
	if (access_log != NULL && access_log != stdout && access_log != stderr)
		fclose(access_log);
	snapshot_unref(st.current);
	return exit_code;
}
