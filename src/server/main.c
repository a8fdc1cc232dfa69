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

#include "admin/admin.h"
#include "jwt/auth.h"
#include "core/common.h"
#include "config/config.h"
#include "upstream/health.h"
#include "jwt/jwks_fetch.h"
#include "telemetry/access_log.h"
#include "core/log.h"
#include "core/log_writer.h"
#include "server/notify.h"
#include "server/reload.h"
#include "server/tls.h"
#include "route/router.h"
#include "server/worker.h"

/* Every -c argument, in order: reloads read them again for the life of the process. */
static const char **main_paths;

static void main_usage(FILE *f)
{
	fprintf(f, "usage: jwtgate -c FILE|DIR [-c FILE|DIR]... [--check | --print-config]\n"
	           "       jwtgate --version | --help\n"
	           "\n"
	           "  -c, --config FILE  configuration file (YAML, see jwtgate.yaml(5)), or Kubernetes\n"
	           "                     manifests (repeat -c; a folder means its *.yaml files)\n"
	           "  -t, --check        validate the configuration, print every error, exit 0 or 1\n"
	           "  -p, --print-config print the configuration as a native jwtgate.yaml and exit\n"
	           "  -v, --version      print the version and exit\n"
	           "  -h, --help         print this help and exit\n"
	           "\n"
	           "Signals: SIGTERM/SIGINT stop accepting, finish in-flight requests (limits.drainTimeout), "
	           "exit 0.\n"
	           "         SIGHUP reloads the configuration; SIGUSR1 reopens the access log file.\n");
}

struct main_state {
	struct worker *workers;
	int n_workers;
	struct event_base *base;
	int signalled;
	bool waiting_first_fetches; /* main_wait_first_fetches is running the control loop */
	struct reload reload;       /* the configuration in force, its fetchers, reload and watch */
	struct admin_state adm;     /* what the admin endpoint reports (kept current here) */
	struct admin *admin;        /* NULL without an admin block */
	struct event *drain_poll;   /* while draining: ends the control loop once every worker is done */
};

/* How long the log writer may take at exit to write what is still queued (a blocked sink is not
 * waited for longer: those lines are counted as dropped). */
#define MAIN_LOG_FLUSH_MS 2000

/* jwtgate_reloads_total{outcome}: reloads (SIGHUP or reload.watch) applied or refused (the running
 * configuration stays), from the reload status. */
static void main_collect_reloads(struct evbuffer *out, void *arg)
{
	struct reload_status rs;
	struct stats_labels l;

	reload_status_get(&rs);
	stats_family(out, "jwtgate_reloads_total", "counter",
	             "Configuration reloads (SIGHUP or watch), by outcome.");
	stats_labels_init(&l);
	stats_labels_add(&l, "outcome", "applied");
	stats_sample_u64(out, "jwtgate_reloads_total", &l, rs.n_ok);
	stats_labels_init(&l);
	stats_labels_add(&l, "outcome", "refused");
	stats_sample_u64(out, "jwtgate_reloads_total", &l, rs.n_refused);
}

/* jwtgate_upstream_healthy and jwtgate_health_checks_total: the active health checks' verdicts and
 * counts (health.h) for the endpoints of backends with healthCheck.active, from the configuration in
 * force. */
static void main_collect_health(struct evbuffer *out, void *arg)
{
	struct main_state *st = arg;
	const struct snapshot *snap = st->reload.current;
	const struct config *cfg = snap->cfg;
	struct health_endpoint_stats hs;
	struct stats_labels l;
	size_t b, e;
	int o;

	stats_family(out, "jwtgate_upstream_healthy", "gauge",
	             "Active health check verdict of a backend endpoint (1 healthy, 0 unhealthy).");
	for (b = 0; b < cfg->n_backends; b++)
		for (e = 0; e < cfg->backends[b].n_endpoints; e++)
			if (health_endpoint_get_stats(snap->health, b, e, &hs) == 0 && hs.is_checked) {
				stats_endpoint_labels(&l, &cfg->backends[b], &cfg->backends[b].endpoints[e]);
				stats_sample_u64(out, "jwtgate_upstream_healthy", &l, hs.is_healthy ? 1 : 0);
			}
	stats_family(out, "jwtgate_health_checks_total", "counter",
	             "Active health checks of a backend endpoint, by outcome (ok, status, timeout, connect, "
	             "reset).");
	for (b = 0; b < cfg->n_backends; b++)
		for (e = 0; e < cfg->backends[b].n_endpoints; e++) {
			if (health_endpoint_get_stats(snap->health, b, e, &hs) != 0 || !hs.is_checked)
				continue;
			for (o = 0; o < HEALTH_OUTCOMES; o++) {
				stats_endpoint_labels(&l, &cfg->backends[b], &cfg->backends[b].endpoints[e]);
				stats_labels_add(&l, "outcome", health_outcome_key((enum health_outcome)o));
				stats_sample_u64(out, "jwtgate_health_checks_total", &l, hs.checks[o]);
			}
		}
}

/* jwtgate_log_dropped_lines_total{log}: access and process log lines dropped because their sink
 * did not keep up (log_writer.h); a worker never waits for a log sink. */
static void main_collect_log_drops(struct evbuffer *out, void *arg)
{
	struct stats_labels l;

	stats_family(out, "jwtgate_log_dropped_lines_total", "counter",
	             "Log lines dropped because the sink did not keep up, by log (access, error).");
	stats_labels_init(&l);
	stats_labels_add(&l, "log", "access");
	stats_sample_u64(out, "jwtgate_log_dropped_lines_total", &l, access_log_dropped_total());
	stats_labels_init(&l);
	stats_labels_add(&l, "log", "error");
	stats_sample_u64(out, "jwtgate_log_dropped_lines_total", &l, log_dropped_total());
}

/* reload_run applied a new configuration (SIGHUP or reload.watch): the admin endpoint reports it. */
static void main_on_reload_applied(void *arg)
{
	struct main_state *st = arg;

	st->adm.current = st->reload.current;
	st->adm.jwks = st->reload.jwks;
	st->adm.generation = st->reload.current->generation;
}

static void main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *st = arg;
	int i;

	if (sig == SIGHUP) {
		/* Not during the start-up wait for the first JWKS fetches (no worker runs yet) nor a drain.
		 * Under a service manager: RELOADING=1 before, READY=1 after, whatever the outcome (a
		 * refused reload leaves the running configuration in force, so the service is ready). */
		if (!st->signalled && !st->waiting_first_fetches) {
			notify_send("RELOADING=1");
			reload_run(&st->reload, "SIGHUP");
			notify_send("READY=1");
		} else {
			log_warn("SIGHUP ignored: %s", st->signalled ? "draining" : "still starting");
		}
		return;
	}
	if (sig == SIGUSR1) {
		/* logrotate: the writer thread reopens the file between two lines. */
		log_info("SIGUSR1: reopening the access log");
		log_writer_reopen();
		return;
	}
	if (st->signalled++) {
		log_warn("second signal: exiting now");
		exit(0);
	}
	log_info("signal %d: draining", (int)sig);
	/* /ready says 503 from now on, while the admin listener stays open, so that a balancer stops
	 * sending before the connections close. */
	st->adm.is_draining = true;
	notify_send("STOPPING=1");
	for (i = 0; i < st->n_workers; i++)
		worker_request_stop(&st->workers[i]);
	if (st->workers == NULL || st->drain_poll == NULL) {
		event_base_loopexit(st->base, NULL);
		return;
	}
	{
		struct timeval tv = {0, 50 * 1000};

		event_add(st->drain_poll, &tv);
	}
}

/* While draining: the control loop (admin endpoint included) runs until every worker's loop has
 * returned; each worker's own drain is bounded by limits.drainTimeout. */
static void main_on_drain_poll(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *st = arg;
	int i;

	for (i = 0; i < st->n_workers; i++)
		if (!atomic_load(&st->workers[i].is_exited))
			return;
	event_del(st->drain_poll);
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
	        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 't'},
	        {"print-config", no_argument, NULL, 'p'}, {"version", no_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	const char **paths; /* main_paths */
	size_t n_paths = 0;
	bool check = false, print_config = false;
	struct config *cfg = NULL;
	struct snapshot *snap = NULL;
	struct main_state st;
	struct event *sigs[5] = {NULL, NULL, NULL, NULL, NULL};
	int signums[5] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, 0};
	int **fds = NULL;
	int opt, rc, i, n_fds = 0, exit_code = 1, backlog, somaxconn;
	size_t k, n_listeners = 0;

	memset(&st, 0, sizeof(st));
	main_paths = jg_xcalloc((size_t)argc + 1, sizeof(*main_paths));
	paths = main_paths;
	while ((opt = getopt_long(argc, argv, "c:tpvh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (path == NULL)
				path = optarg;
			paths[n_paths++] = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'p':
			print_config = true;
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
	if (check && print_config) {
		fprintf(stderr, "jwtgate: --check and --print-config are exclusive\n");
		return 1;
	}
	if (print_config) {
		rc = config_print(paths, n_paths, stdout, stderr);
		if (rc > 0)
			fprintf(stderr, "jwtgate: %s: %d error%s\n", path, rc, rc == 1 ? "" : "s");
		else if (rc < 0)
			fprintf(stderr, "jwtgate: %s: cannot read: %s\n", path,
			        strerror(rc > -1000 ? -rc : EIO));
		return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
	}
	rc = config_load_many(paths, n_paths, stderr, &cfg);
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
	rc = reload_snapshot_build(cfg, stderr, &snap);
	cfg = NULL; /* the snapshot owns it (or freed it) */
	if (rc != 0) {
		fprintf(stderr, "jwtgate: %s: %d file%s it names could not be loaded\n", path, rc,
		        rc == 1 ? "" : "s");
		return 1;
	}
	cfg = snap->cfg; /* the start-up configuration: valid until the first reload replaces it */
	snap->stats = stats_gen_new(cfg, cfg->workers);
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
		rc = log_writer_open_access(cfg->access_log_path);
		if (rc < 0) {
			fprintf(stderr, "jwtgate: accessLog %s: %s\n", cfg->access_log_path, strerror(-rc));
			goto out;
		}
	}

	/* The control base comes first: the remote JWKS fetchers run on it before any listener opens. */
	st.base = event_base_new();
	if (st.base == NULL) {
		fprintf(stderr, "jwtgate: cannot create the control event loop\n");
		goto out;
	}
	tls_tickets_start(st.base); /* the session ticket keys of the first snapshot's listeners rotate */
	reload_init(&st.reload, st.base, path, snap, jwks_fetch_new(st.base, cfg, snap->auth));
	reload_set_paths(&st.reload, paths, n_paths);
	snap = NULL; /* st.reload.current */
	st.reload.on_applied = main_on_reload_applied;
	st.reload.on_applied_arg = &st;
	st.adm.config_path = path;
	st.adm.current = st.reload.current;
	st.adm.jwks = st.reload.jwks;
	st.adm.generation = st.reload.current->generation;
	st.adm.start_time = jg_wall_time();
	st.adm.start_ms = jg_now_ms();
	stats_registry_add(&st.adm.extra, main_collect_reloads, &st);
	stats_registry_add(&st.adm.extra, main_collect_health, &st);
	stats_registry_add(&st.adm.extra, main_collect_log_drops, &st);
	for (i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(st.base, signums[i], main_on_signal, &st);
		evsignal_add(sigs[i], NULL);
	}
	/* The admin endpoint opens first: during the first JWKS fetches /ready already says why the
	 * process is not ready, and /live that it runs. */
	if (cfg->has_admin) {
		st.admin = admin_new(st.base, cfg, &st.adm, stderr);
		if (st.admin == NULL)
			goto out;
	}
	st.drain_poll = event_new(st.base, -1, EV_PERSIST, main_on_drain_poll, &st);
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
	if (worker_check_listen_free(cfg, stderr) < 0)
		goto out;
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
		if (worker_init(&st.workers[i], i, st.reload.current, fds[i], cfg->access_log_path != NULL) <
		    0) {
			fprintf(stderr, "jwtgate: worker %d: initialisation failed\n", i);
			goto out;
		}
	}
	/* From here on nothing waits for stderr or the access log sink: lines are queued per thread and
	 * one writer thread writes them (log_writer.h). Start-up errors above were written at once. */
	fflush(stdout);
	fflush(stderr);
	rc = log_writer_start(st.n_workers, (size_t)cfg->access_log_buffer);
	if (rc < 0)
		log_warn("log writer: %s; logging synchronously", strerror(-rc));
	for (i = 0; i < st.n_workers; i++)
		worker_start(&st.workers[i]);
	/* From here on a reload has workers to hand its snapshot to (and the watch may trigger one). */
	reload_set_workers(&st.reload, st.workers, st.n_workers);
	st.adm.workers = st.workers;
	st.adm.n_workers = st.n_workers;
	st.adm.is_listening = true;
	backlog = worker_listen_backlog(cfg, &somaxconn);
	for (k = 0; k < cfg->n_listeners; k++)
		log_info("listening on %s (%s) with %d worker%s, backlog %d (limits.listenBacklog %u, "
		         "net.core.somaxconn %d)",
		         cfg->listeners[k].address_text, cfg->listeners[k].name, st.n_workers,
		         st.n_workers == 1 ? "" : "s", backlog, cfg->limits.listen_backlog, somaxconn);

	/* Readiness (Type=notify): every listener is bound and listening, and the first JWKS fetches
	 * are done (or their bound passed). */
	notify_send("READY=1");

	event_base_dispatch(st.base);

	for (i = 0; i < st.n_workers; i++)
		worker_join(&st.workers[i]);
	log_info("stopped");
	log_writer_stop(MAIN_LOG_FLUSH_MS);
	/* After the stop, so that lines the exit bound cut off are counted too. */
	if (log_writer_has_access())
		log_info("access log: %llu lines dropped", (unsigned long long)access_log_dropped_total());
	if (log_dropped_total() > 0)
		log_warn("log: %llu lines dropped", (unsigned long long)log_dropped_total());
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
	admin_free(st.admin);
	if (st.drain_poll != NULL)
		event_free(st.drain_poll);
	tls_tickets_stop();
	if (st.base != NULL) {
		reload_fini(&st.reload); /* fetchers, watches, the snapshot in force (cfg with it) */
		event_base_free(st.base);
	}
	snapshot_unref(snap); /* not handed to st.reload */
	free(fds);
	free(st.workers);
	tls_tickets_free(); /* every snapshot, so every TLS context, is gone */
	log_writer_close();
	return exit_code;
}
