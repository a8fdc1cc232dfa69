/* main.c: command line, configuration, worker threads, signals. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "jwtgate/auth.h"
#include "jwtgate/common.h"
#include "jwtgate/config.h"
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
		   "Signals: SIGTERM/SIGINT stop accepting, finish in-flight requests (limits.drainTimeout), exit 0.\n");
}

struct main_state {
	struct worker *workers;
	int n_workers;
	struct event_base *base;
	int signalled;
};

static void main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *st = arg;
	int i;

	if (sig == SIGHUP) {
		log_warn("SIGHUP: configuration reload is not supported yet; restart to apply changes");
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 't'},
		{"version", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool check = false;
	struct config *cfg = NULL;
	struct router *router = NULL;
	struct auth_shared *auth = NULL;
	struct main_state st;
	struct event *sigs[4];
	int signums[4] = {SIGTERM, SIGINT, SIGHUP, 0};
	FILE *access_log = NULL;
	int **fds = NULL;
	int opt, rc, i, exit_code = 1;

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
			fprintf(stderr, "jwtgate: %s: cannot read: %s\n", path, strerror(rc > -1000 ? -rc : EIO));
		return 1;
	}
	log_set_level((enum log_level)cfg->log_level);
	auth = auth_shared_new(cfg, stderr);
	if (auth == NULL) {
		fprintf(stderr, "jwtgate: %s: JWT key sets could not be loaded\n", path);
		goto out;
	}
	if (check) {
		printf("jwtgate: %s: configuration OK\n", path);
		exit_code = 0;
		goto out;
	}

	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	log_hook_libevent();
	router = router_new(cfg);
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

	memset(&st, 0, sizeof(st));
	st.n_workers = cfg->workers;
	st.workers = jg_xcalloc((size_t)st.n_workers, sizeof(*st.workers));
	fds = jg_xcalloc((size_t)st.n_workers, sizeof(*fds));
	/* Bind every socket before any thread starts, so a busy port fails the start cleanly. */
	for (i = 0; i < st.n_workers; i++) {
		fds[i] = jg_xcalloc(cfg->n_listeners, sizeof(int));
		if (worker_open_listen_sockets(cfg, fds[i], stderr) < 0)
			goto out;
	}
	for (i = 0; i < st.n_workers; i++) {
		if (worker_init(&st.workers[i], i, cfg, router, auth, fds[i], access_log) < 0) {
			fprintf(stderr, "jwtgate: worker %d: initialisation failed\n", i);
			goto out;
		}
	}
	st.base = event_base_new();
	for (i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(st.base, signums[i], main_on_signal, &st);
		evsignal_add(sigs[i], NULL);
	}
	for (i = 0; i < st.n_workers; i++)
		worker_start(&st.workers[i]);
	for (i = 0; i < (int)cfg->n_listeners; i++)
		log_info("listening on %s (%s) with %d worker%s", cfg->listeners[i].address_text,
			 cfg->listeners[i].name, st.n_workers, st.n_workers == 1 ? "" : "s");

	event_base_dispatch(st.base);

	for (i = 0; i < st.n_workers; i++)
		worker_join(&st.workers[i]);
	log_info("stopped");
	for (i = 0; signums[i] != 0; i++)
		event_free(sigs[i]);
	for (i = 0; i < st.n_workers; i++)
		worker_free(&st.workers[i]);
	event_base_free(st.base);
	exit_code = 0;
out:
	if (fds != NULL) {
		for (i = 0; i < cfg->workers; i++) {
			if (fds[i] == NULL)
				continue;
			for (size_t k = 0; k < cfg->n_listeners; k++)
				if (fds[i][k] > 0)
					close(fds[i][k]);
			free(fds[i]);
		}
		free(fds);
		free(st.workers);
	}
	if (access_log != NULL && access_log != stdout && access_log != stderr)
		fclose(access_log);
	if (access_log != NULL)
		fflush(access_log);
	router_free(router);
	auth_shared_free(auth);
	config_free(cfg);
	return exit_code;
}
