/* worker.c: worker threads. Each has its own event_base, its own SO_REUSEPORT listening socket per
 * listener (the kernel spreads connections), its own upstream pools and token cache, so nothing on
 * the request path takes a lock. The main thread only asks a worker to stop. */
#include "server/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "upstream/health.h"
#include "codec/http1.h"
#include "codec/http2.h"
#include "core/log.h"
#include "core/log_writer.h"
#include "server/tls.h"

atomic_uint worker_open_conns;

int worker_listen_backlog(const struct config *cfg, int *somaxconn)
{
	long want = (long)cfg->limits.listen_backlog, max = 0;
	FILE *f = fopen("/proc/sys/net/core/somaxconn", "re");

	if (f != NULL) {
		if (fscanf(f, "%ld", &max) != 1 || max <= 0 || max > INT_MAX)
			max = 0;
		fclose(f);
	}
	*somaxconn = (int)max;
	return (int)(max > 0 && want > max ? max : want);
}

/* A socket of listener l bound to its address (SO_REUSEADDR: a port our previous run left in
 * TIME_WAIT is free), joining the workers' SO_REUSEPORT group when reuseport; listening with backlog
 * when backlog > 0. Returns the descriptor or -errno. */
static int worker_bind(const struct config_listener *l, bool reuseport, int backlog)
{
	int one = 1, e;
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) ||
	    bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) == -1 ||
	    (backlog > 0 && listen(fd, backlog) == -1)) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int worker_check_listen_free(const struct config *cfg, FILE *err)
{
	size_t i;

	for (i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		/* Without SO_REUSEPORT a socket cannot join another process's reuseport group: the bind
		 * fails while anyone listens on the address. */
		int fd = worker_bind(l, false, 0);

		if (fd == -EADDRINUSE) {
			fprintf(err,
			        "jwtgate: listener %s (%s): address already in use (another process listens "
			        "there)\n",
			        l->name, l->address_text);
			return -EADDRINUSE;
		}
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

int worker_open_listen_sockets(const struct config *cfg, int *fds, FILE *err)
{
	size_t i;
	int somaxconn;
	int backlog = worker_listen_backlog(cfg, &somaxconn);

	for (i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		int fd = worker_bind(l, true, backlog);

		if (fd < 0) {
			fprintf(err, "jwtgate: listener %s (%s): %s\n", l->name, l->address_text,
			        strerror(-fd));
			while (i-- > 0) {
				close(fds[i]);
				fds[i] = -1;
			}
			return fd;
		}
		fds[i] = fd;
	}
	return 0;
}

struct snapshot *snapshot_new(struct config *cfg, struct router *router, struct auth_shared *auth)
{
	struct snapshot *s = jg_xcalloc(1, sizeof(*s));

	atomic_init(&s->refs, 1);
	s->generation = 1;
	s->cfg = cfg;
	s->router = router;
	s->auth = auth;
	s->listener_tls = jg_xcalloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*s->listener_tls));
	s->backend_tls = jg_xcalloc(cfg->n_backends ? cfg->n_backends : 1, sizeof(*s->backend_tls));
	s->health = health_shared_new(cfg);
	return s;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
	atomic_fetch_add(&s->refs, 1);
	return s;
}

void snapshot_unref(struct snapshot *s)
{
	size_t i;

	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (i = 0; i < s->cfg->n_listeners; i++)
		tls_ctx_free(s->listener_tls[i]);
	for (i = 0; i < s->cfg->n_backends; i++)
		tls_ctx_free(s->backend_tls[i]);
	free(s->listener_tls);
	free(s->backend_tls);
	router_free(s->router);
	auth_shared_free(s->auth);
	health_shared_free(s->health);
	stats_gen_free(s->stats);
	config_free(s->cfg);
	free(s);
}

static void worker_gen_free(struct worker_gen *g);

static void worker_on_gen_free(evutil_socket_t fd, short what, void *arg)
{
	worker_gen_free(arg);
}

/* Builds the worker-local state for a snapshot (start-up tier allocation). */
static struct worker_gen *worker_gen_new(struct worker *w, struct snapshot *snap)
{
	struct worker_gen *g = jg_xcalloc(1, sizeof(*g));

	g->snap = snap;
	g->cfg = snap->cfg;
	g->router = snap->router;
	g->auth = auth_worker_new(snap->auth, snap->cfg->token_cache_size);
	g->upstream = upstream_worker_new(w->base, snap->cfg, snap->backend_tls, snap->health);
	g->stats = stats_gen_shard(snap->stats, w->id);
	auth_worker_set_stats(g->auth, g->stats, w->stats);
	upstream_worker_set_stats(g->upstream, g->stats);
	g->refs = 1;
	event_assign(&g->free_ev, w->base, -1, 0, worker_on_gen_free, g);
	return g;
}

static void worker_gen_free(struct worker_gen *g)
{
	event_del(&g->free_ev);
	upstream_worker_free(g->upstream);
	auth_worker_free(g->auth);
	snapshot_unref(g->snap);
	free(g);
}

struct worker_gen *worker_gen_acquire(struct worker *w)
{
	w->gen->refs++;
	return w->gen;
}

void worker_gen_release(struct worker *w, struct worker_gen *g)
{
	if (g == NULL)
		return;
	if (--g->refs == 0) {
		if (g == w->gen)
			w->gen = NULL;
		/* Callers may be deep inside an upstream callback of this generation's pools. */
		event_active(&g->free_ev, EV_TIMEOUT, 0);
	}
}

static void worker_on_reload(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct snapshot *snap = atomic_exchange(&w->pending, NULL);
	struct worker_gen *old = w->gen;

	if (snap == NULL)
		return;
	w->gen = worker_gen_new(w, snap);
	w->cfg = snap->cfg;
	/* Idle pooled connections of the old generation go now; busy ones end with their request. */
	upstream_worker_close_idle(old->upstream);
	worker_gen_release(w, old);
	log_info("worker %d: configuration reloaded", w->id);
}

/* Wakes the worker from another thread. The worker's event_base has no lock (the request path must
 * not pay for one), so the only cross-thread signal is this eventfd. */
static void worker_notify(struct worker *w)
{
	uint64_t one = 1;

	if (write(w->notify_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_error("worker %d: cannot notify: %s", w->id, strerror(errno));
}

void worker_reload(struct worker *w, struct snapshot *snap)
{
	struct snapshot *old = atomic_exchange(&w->pending, snap);

	/* A reload not yet taken is replaced by the newer one. */
	snapshot_unref(old);
	worker_notify(w);
}

uint64_t worker_random(struct worker *w)
{
	return jg_rng_next(&w->rng);
}

void worker_count_request(struct worker *w, struct worker_gen *g, int listener,
                          const struct config_rule *rule, int status, uint64_t start_us, uint64_t now_us)
{
	if (g == NULL)
		g = w->gen;
	if (g == NULL)
		return;
	stats_count_request(g->stats, listener, rule != NULL ? rule->route->index : -1, status,
	                    start_us != 0 && now_us > start_us ? now_us - start_us : 0);
}

void worker_conn_added(struct worker *w, struct worker_conn *wc)
{
	if (wc->listener_index >= 0 && (size_t)wc->listener_index < w->stats->n_listeners)
		stats_add(stats_worker_open(w->stats, wc->listener_index, wc->proto), 1);
	wc->prev = NULL;
	wc->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = wc;
	w->conns = wc;
	w->n_conns++;
}

void worker_conn_removed(struct worker *w, struct worker_conn *wc)
{
	if (wc->prev != NULL)
		wc->prev->next = wc->next;
	else
		w->conns = wc->next;
	if (wc->next != NULL)
		wc->next->prev = wc->prev;
	wc->next = wc->prev = NULL;
	w->n_conns--;
	if (wc->listener_index >= 0 && (size_t)wc->listener_index < w->stats->n_listeners)
		stats_add(stats_worker_open(w->stats, wc->listener_index, wc->proto), (uint64_t)-1);
	atomic_fetch_sub(&worker_open_conns, 1);
	if (w->draining && w->n_conns == 0)
		event_base_loopexit(w->base, NULL);
}

static void worker_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                             void *arg)
{
	struct worker *w = arg;
	int listener_index = -1;
	size_t i;
	int one = 1;

	for (i = 0; i < w->cfg->n_listeners; i++)
		if (w->listeners[i] == l)
			listener_index = (int)i;
	if (atomic_fetch_add(&worker_open_conns, 1) >= w->cfg->limits.max_connections) {
		/* Over limits.maxConnections: refuse at once rather than queue without bound. */
		atomic_fetch_sub(&worker_open_conns, 1);
		log_warn("worker %d: connection limit %u reached, closing new connection", w->id,
		         w->cfg->limits.max_connections);
		close(fd);
		return;
	}
	if (listener_index >= 0)
		stats_add(stats_worker_accepted(w->stats, listener_index), 1);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* The current snapshot's context: a reload that renewed the certificate applies from the next
	 * handshake on (listeners are the same in every snapshot, reload.c makes sure). */
	if (listener_index >= 0 && w->gen->snap->listener_tls[listener_index] != NULL) {
		/* The codec is chosen by ALPN once the handshake is done (tls.c); it gives the count back
		 * itself on failure. */
		tls_accept(w, w->gen->snap->listener_tls[listener_index], fd, sa, (socklen_t)len,
		           listener_index);
		return;
	}
	if (http1_conn_accept(w, fd, sa, (socklen_t)len, listener_index) < 0)
		atomic_fetch_sub(&worker_open_conns, 1);
}

static void worker_on_accept_error(struct evconnlistener *l, void *arg)
{
	struct worker *w = arg;

	/* EMFILE and friends: log and go on; libevent keeps the listener. */
	log_error("worker %d: accept: %s", w->id, strerror(errno));
}

static void worker_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	struct worker_conn *c, *next;

	log_warn("worker %d: drain timeout with %zu connections left; closing them", w->id, w->n_conns);
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		c->abort(c);
	}
	/* The last deferred free ends the loop (worker_conn_removed). */
}

static void worker_on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct worker_conn *c, *next;
	struct timeval tv = {(time_t)(w->cfg->limits.drain_timeout_ms / 1000),
	                     (suseconds_t)(w->cfg->limits.drain_timeout_ms % 1000) * 1000};
	size_t i;

	if (w->draining)
		return;
	w->draining = true;
	/* Stop accepting: closing our listening sockets makes new connections fail. */
	for (i = 0; i < w->cfg->n_listeners; i++) {
		if (w->listeners[i] != NULL) {
			evconnlistener_free(w->listeners[i]);
			w->listeners[i] = NULL;
		}
	}
	upstream_worker_close_idle(w->gen->upstream);
	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		c->drain(c);
	}
	if (w->n_conns == 0) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	evtimer_assign(&w->drain_ev, w->base, worker_on_drain_timeout, w);
	evtimer_add(&w->drain_ev, &tv);
}

static void worker_on_notify(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) == -1 && errno != EAGAIN)
		log_error("worker %d: notify read: %s", w->id, strerror(errno));
	/* Every wake-up answers the heartbeat: reaching this callback proves the loop turns. */
	atomic_store_explicit(&w->heartbeat_ms, jg_now_ms(), memory_order_relaxed);
	worker_on_reload(-1, 0, w);
	if (atomic_load(&w->stop_requested)) {
		event_del(&w->notify_ev);
		worker_on_stop(-1, 0, w);
	}
}

int worker_init(struct worker *w, int id, struct snapshot *snap, int *listen_fds, bool has_access_log)
{
	const struct config *cfg = snap->cfg;
	size_t i;

	memset(w, 0, sizeof(*w));
	w->id = id;
	w->cfg = cfg;
	w->listen_fds = listen_fds;
	w->has_access_log = has_access_log;
	jg_rng_seed(&w->rng, (uint64_t)id + 1);
	w->stats = stats_worker_new(cfg->n_listeners);
	atomic_store(&w->heartbeat_ms, jg_now_ms());
	{
		/* No lock on the worker's base: only its own thread touches it (see worker_notify). */
		struct event_config *ec = event_config_new();

		if (ec == NULL)
			return JG_ERR_NOMEM;
		event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
		w->base = event_base_new_with_config(ec);
		event_config_free(ec);
	}
	if (w->base == NULL)
		return JG_ERR_NOMEM;
	bevio_timeouts_init(&w->timeouts, w->base);
	bevio_defer_init(&w->defer, w->base);
	arena_cache_init(&w->arenas, WORKER_ARENA_CHUNK, WORKER_ARENA_CACHED);
	/* Address space for one slot per connection the process may hold (24 KiB each, untouched until
	 * used); should it be refused, HTTP/2 sessions keep their buffers on the heap. */
	if (http2_mem_pool_init(&w->h2_pages, cfg->limits.max_connections) < 0)
		log_info("worker %d: no HTTP/2 page pool; idle HTTP/2 connections keep their buffers", id);
	w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->notify_fd == -1)
		return -errno;
	event_assign(&w->notify_ev, w->base, w->notify_fd, EV_READ | EV_PERSIST, worker_on_notify, w);
	event_add(&w->notify_ev, NULL);
	w->gen = worker_gen_new(w, snapshot_ref(snap));
	atomic_init(&w->pending, NULL);
	w->listeners = jg_xcalloc(cfg->n_listeners, sizeof(*w->listeners));
	for (i = 0; i < cfg->n_listeners; i++) {
		/* Backlog 0: the socket already listens with limits.listenBacklog. A negative value would
		 * make libevent call listen(fd, 128) again and shrink the queue to 128 SYNs. */
		w->listeners[i] =
		        evconnlistener_new(w->base, worker_on_accept, w,
		                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, listen_fds[i]);
		if (w->listeners[i] == NULL)
			return JG_ERR_NOMEM;
		listen_fds[i] = -1; /* owned by the evconnlistener now */
		evconnlistener_set_error_cb(w->listeners[i], worker_on_accept_error);
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	log_writer_attach(w->id); /* this thread's own log rings: it never waits for a sink */
	event_base_dispatch(w->base);
	/* Run what the last callbacks deferred (frees of connections and exchanges). */
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	atomic_store(&w->is_exited, true);
	return NULL;
}

int worker_start(struct worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);

	return rc == 0 ? 0 : -rc;
}

void worker_request_stop(struct worker *w)
{
	atomic_store(&w->stop_requested, true);
	worker_notify(w);
}

void worker_heartbeat(struct worker *w)
{
	worker_notify(w);
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
	size_t i;

	if (w->listeners != NULL) {
		for (i = 0; i < w->cfg->n_listeners; i++)
			if (w->listeners[i] != NULL)
				evconnlistener_free(w->listeners[i]);
		free(w->listeners);
	}
	snapshot_unref(atomic_exchange(&w->pending, NULL));
	if (w->gen != NULL)
		worker_gen_free(w->gen); /* the loop is over: nothing else can hold it */
	if (w->base != NULL) {
		event_del(&w->notify_ev);
		bevio_defer_close(&w->defer);
		event_base_free(w->base);
	}
	if (w->notify_fd > 0)
		close(w->notify_fd);
	arena_cache_free(&w->arenas);
	pagepool_fini(&w->h2_pages);
	free(w->stats);
	w->stats = NULL;
}
