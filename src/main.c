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
#include "jwtgate/health.h"
#include "jwtgate/jwks_fetch.h"
#include "jwtgate/log.h"
#include "jwtgate/reload.h"
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
	struct reload reload;       /* the configuration in force, its fetchers, reload and watch */
};

static void main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *st = arg;
	int i;

	if (sig == SIGHUP) {
		/* Not during the start-up wait for the first JWKS fetches (no worker runs yet) nor a drain.
		 */
		if (!st->signalled && !st->waiting_first_fetches)
			reload_run(&st->reload, "SIGHUP");
		else
			log_warn("SIGHUP ignored: %s", st->signalled ? "draining" : "still starting");
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
	struct snapshot *snap = NULL;
	struct main_state st;
	struct event *sigs[4] = {NULL, NULL, NULL, NULL};
	int signums[4] = {SIGTERM, SIGINT, SIGHUP, 0};
	FILE *access_log = NULL;
	int **fds = NULL;
	int opt, rc, i, n_fds = 0, exit_code = 1, backlog, somaxconn;
	size_t k, n_listeners = 0;

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
	/* Everything the file names (key sets, certificates and keys, CA bundles) is loaded here, so
	 * --check finds what a start would trip on. */
	rc = reload_snapshot_build(cfg, NULL, stderr, &snap);
	cfg = NULL; /* the snapshot owns it (or freed it) */
	if (rc != 0) {
		fprintf(stderr, "jwtgate: %s: %d file%s it names could not be loaded\n", path, rc,
		        rc == 1 ? "" : "s");
		return 1;
	}
	cfg = snap->cfg; /* the start-up configuration: valid until the first reload replaces it */
	n_listeners = cfg->n_listeners;
	if (check) {
		printf("jwtgate: %s: configuration OK\n", path);
		snapshot_unref(snap);
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
	reload_init(&st.reload, st.base, path, snap, jwks_fetch_new(st.base, cfg, snap->auth));
	snap = NULL; /* st.reload.current */
	for (i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(st.base, signums[i], main_on_signal, &st);
		evsignal_add(sigs[i], NULL);
	}
	if (cfg->has_admin)
		log_warn("admin: the admin endpoint (readiness, metrics) is not served by this version; the "
		         "block is validated and ignored");
	main_wait_first_fetches(&st, st.reload.jwks);
	if (st.signalled) {
		exit_code = 0;
		goto out;
	}

	/* One checker per endpoint for the whole process, on this thread; the first checks go out with
	 * the listeners opening (endpoints count as healthy until a check says otherwise). */
	st.reload.health = health_check_new(st.base, cfg, st.reload.current->health);
	health_check_start(st.reload.health);

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
		if (worker_init(&st.workers[i], i, st.reload.current, fds[i], access_log) < 0) {
			fprintf(stderr, "jwtgate: worker %d: initialisation failed\n", i);
			goto out;
		}
	}
	for (i = 0; i < st.n_workers; i++)
		worker_start(&st.workers[i]);
	/* From here on a reload has workers to hand its snapshot to (and the watch may trigger one). */
	reload_set_workers(&st.reload, st.workers, st.n_workers);
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
	for (i = 0; i < n_fds; i++) {
		for (k = 0; k < n_listeners; k++)
			if (fds[i][k] >= 0)
				close(fds[i][k]);
		free(fds[i]);
	}
	/* Workers are joined (or never started): the fetchers' hook can no longer be called. */
	for (i = 0; signums[i] != 0; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	if (st.base != NULL) {
		reload_fini(&st.reload); /* fetchers, watches, the snapshot in force (cfg with it) */
		event_base_free(st.base);
	}
	snapshot_unref(snap); /* not handed to st.reload */
	free(fds);
	free(st.workers);
	if (access_log != NULL)
		fflush(access_log);
	if (access_log != NULL && access_log != stdout && access_log != stderr)
		fclose(access_log);
	return exit_code;
}
