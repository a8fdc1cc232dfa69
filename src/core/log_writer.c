/* log_writer.c: bounded per-thread rings and one writer thread (see log_writer.h).
 *
 * Ring: a byte ring of a power-of-two size with two free-running 64-bit counters, `tail` written only
 * by the producer and `head` only by the writer (single producer, single consumer; the shared ring's
 * producers take a mutex among themselves, the writer never does). A record is a 4-byte length and
 * the line. A full ring drops the line and bumps the producer's own counter: a worker never waits,
 * and counts in its own memory (no read-modify-write on a line another thread writes).
 *
 * Wake-ups: the writer sleeps in poll(2) on an eventfd. Before sleeping it raises a per-stream
 * `sleeping` flag and looks at the rings once more; a producer reads that flag after publishing its
 * line (a seq_cst fence on both sides orders the flag against the ring, Dekker style) and writes the
 * eventfd only when it finds it raised, so a busy writer costs the producers no system call. While a
 * sink is blocked the flag stays down: lines pile up, then drop, and nobody wakes the writer for
 * lines it could not write anyway; it polls the sink for POLLOUT instead.
 *
 * Sinks: a pipe, FIFO or tty (a shared stdout, say) is reopened through /proc/self/fd/N to get an
 * open file description of our own that can be O_NONBLOCK without changing the flags that the
 * parent shell or other processes see on theirs; a socket (systemd's journal stream) is written with
 * send(MSG_DONTWAIT); a regular file with plain write(2) (a disk does not block the way a reader
 * does, and the writer thread is the only one that would wait). stderr as the access log shares the
 * process log's sink, so the two never interleave inside a line. */
#include "core/log_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_RING_PROCESS    (64 * 1024) /* per thread, process log */
#define LOG_SINK_PEND       (64 * 1024) /* whole lines taken from the rings, being written */
#define LOG_SINK_WAIT_MS    1000        /* poll bound while a sink is blocked */
#define LOG_WRITER_BATCH_MS 2           /* a drained writer naps this long before it sleeps */
#define LOG_DIRECT_BOUND_MS 200         /* after stop: how long one line may wait for a full pipe */
#define LOG_SERVICE_ROUNDS  64          /* fill+write rounds before the writer looks at its requests */

enum log_writer_state {
	LOG_WRITER_DIRECT = 0, /* not started: the caller writes (blocking: start-up errors) */
	LOG_WRITER_QUEUED,     /* the writer thread runs */
	LOG_WRITER_STOPPED,    /* stopped: the caller writes, bounded */
};

struct log_ring {
	_Alignas(64) atomic_uint_fast64_t tail; /* producer: bytes ever queued */
	atomic_uint_fast64_t dropped;           /* producer: lines dropped (load + store, one writer) */
	_Alignas(64) atomic_uint_fast64_t head; /* writer: bytes ever taken */
	size_t mask;
	char *buf;
};

enum log_sink_kind {
	LOG_SINK_FILE = 0, /* regular file: blocking write */
	LOG_SINK_NONBLOCK, /* pipe, FIFO, tty, other character device: O_NONBLOCK description */
	LOG_SINK_SOCKET,   /* send(MSG_DONTWAIT) */
};

struct log_sink {
	bool is_open;
	int fd;
	bool owns_fd;
	int std_fd;        /* 1 or 2 for stdout / stderr, -1 for a file */
	int restore_flags; /* fcntl flags to put back on std_fd at close, -1: none changed */
	enum log_sink_kind kind;
	char *path; /* a file's path (reopen); NULL for stdout/stderr */
	bool is_blocked;
	bool is_failed;            /* a write failed for good: its lines are counted, not kept */
	atomic_uint_fast64_t lost; /* lines the writer dropped (failed sink, stop bound) */
	char pend[LOG_SINK_PEND];
	size_t pend_off, pend_len;
};

static struct {
	struct log_sink sinks[2]; /* [0] stderr; [1] the access log unless it is stderr */
	struct log_sink *sink_of[LOG_STREAM_COUNT];
	int n_slots;
	struct log_ring *rings[LOG_STREAM_COUNT]; /* n_slots + 1 each, the last shared */
	pthread_mutex_t shared_lock[LOG_STREAM_COUNT];
	pthread_mutex_t direct_lock;
	pthread_t thread;
	int efd;
	atomic_int state;
	atomic_bool sleeping[LOG_STREAM_COUNT];
	atomic_bool reopen_requested;
	atomic_bool stop_requested;
	uint64_t stop_deadline_ms;
	atomic_uint_fast64_t direct_dropped[LOG_STREAM_COUNT];
} lw = {
        .shared_lock = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER},
        .direct_lock = PTHREAD_MUTEX_INITIALIZER,
        .efd = -1,
};

static _Thread_local int lw_slot = -1;

static uint64_t lw_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- sinks ---- */

/* Gives a sink a descriptor it may write without blocking where that matters (see the top). */
static int lw_sink_setup(struct log_sink *k, int fd, bool owns_fd)
{
	struct stat st;

	k->fd = fd;
	k->owns_fd = owns_fd;
	k->restore_flags = -1;
	k->kind = LOG_SINK_FILE;
	if (fstat(fd, &st) == -1)
		return -errno;
	if (S_ISREG(st.st_mode))
		return 0;
	if (S_ISSOCK(st.st_mode)) {
		k->kind = LOG_SINK_SOCKET;
		return 0;
	}
	k->kind = LOG_SINK_NONBLOCK;
	if (!owns_fd) {
		char proc[64];
		int nfd;

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		nfd = open(proc, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (nfd != -1) {
			k->fd = nfd;
			k->owns_fd = true;
			return 0;
		}
		/* No /proc: the shared description becomes non-blocking, and is put back at close. */
		k->restore_flags = fcntl(fd, F_GETFL);
		if (k->restore_flags == -1)
			return -errno;
		if (fcntl(fd, F_SETFL, k->restore_flags | O_NONBLOCK) == -1)
			return -errno;
		return 0;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
		return -errno;
	return 0;
}

static int lw_open_path(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0640);
}

static int lw_sink_open_std(struct log_sink *k, int std_fd)
{
	int rc;

	if (k->is_open)
		return 0;
	k->std_fd = std_fd;
	rc = lw_sink_setup(k, std_fd, false);
	if (rc < 0)
		return rc;
	k->is_open = true;
	return 0;
}

int log_writer_open_access(const char *path)
{
	struct log_sink *k = &lw.sinks[1];
	int fd, rc;

	if (strcmp(path, "stderr") == 0) {
		rc = lw_sink_open_std(&lw.sinks[0], 2);
		if (rc == 0)
			lw.sink_of[LOG_STREAM_ACCESS] = &lw.sinks[0];
		return rc;
	}
	if (strcmp(path, "stdout") == 0) {
		rc = lw_sink_open_std(k, 1);
		if (rc == 0)
			lw.sink_of[LOG_STREAM_ACCESS] = k;
		return rc;
	}
	fd = lw_open_path(path);
	if (fd == -1)
		return -errno;
	k->std_fd = -1;
	rc = lw_sink_setup(k, fd, true);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	k->path = strdup(path);
	if (k->path == NULL) {
		close(fd);
		return -ENOMEM;
	}
	k->is_open = true;
	lw.sink_of[LOG_STREAM_ACCESS] = k;
	return 0;
}

bool log_writer_has_access(void)
{
	return lw.sink_of[LOG_STREAM_ACCESS] != NULL;
}

/* How many of the n pending bytes at p one write() to a non-blocking pipe may take so that no line is
 * ever torn: whole lines, at most PIPE_BUF bytes, which POSIX makes atomic (all written or EAGAIN). A
 * full pipe then holds only whole lines, also when the writer stops with the pipe still full. Only a
 * single line longer than PIPE_BUF (up to LOG_WRITER_LINE_MAX) goes out as one plain write. */
static size_t lw_pipe_chunk(const char *p, size_t n)
{
	const char *nl;

	if (n <= PIPE_BUF)
		return n; /* pending bytes always end with a newline */
	nl = memrchr(p, '\n', PIPE_BUF);
	if (nl != NULL)
		return (size_t)(nl - p) + 1;
	nl = memchr(p, '\n', n);
	return nl != NULL ? (size_t)(nl - p) + 1 : n;
}

/* Writes the sink's pending bytes. Returns 0 when all are out, 1 when the sink is full, or -errno. */
static int lw_sink_flush(struct log_sink *k)
{
	while (k->pend_off < k->pend_len) {
		size_t n = k->pend_len - k->pend_off;
		ssize_t r;

		if (k->kind == LOG_SINK_NONBLOCK)
			n = lw_pipe_chunk(k->pend + k->pend_off, n);
		if (k->kind == LOG_SINK_SOCKET)
			r = send(k->fd, k->pend + k->pend_off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		else
			r = write(k->fd, k->pend + k->pend_off, n);
		if (r > 0) {
			k->pend_off += (size_t)r;
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		return r == 0 ? -EIO : -errno;
	}
	k->pend_off = 0;
	k->pend_len = 0;
	return 0;
}

static uint64_t lw_count_lines(const char *p, size_t n)
{
	uint64_t c = 0;
	size_t i;

	for (i = 0; i < n; i++)
		c += p[i] == '\n';
	return c;
}

/* The sink cannot be written any more (its reader is gone, the disk failed): what it holds is
 * counted as dropped, later lines too, until a reopen succeeds. Said once on stderr, unless the
 * failed sink is stderr. */
static void lw_sink_fail(struct log_sink *k, int err)
{
	char msg[256];
	int n;

	atomic_fetch_add(&k->lost, lw_count_lines(k->pend + k->pend_off, k->pend_len - k->pend_off));
	k->pend_off = 0;
	k->pend_len = 0;
	k->is_failed = true;
	k->is_blocked = false;
	if (k != &lw.sinks[0]) {
		n = snprintf(msg, sizeof(msg), "jwtgate: log sink %s: %s; its lines are dropped\n",
		             k->path != NULL ? k->path : "stdout", strerror(-err));
		if (n > 0)
			log_writer_put(LOG_STREAM_PROCESS, msg, (size_t)n);
	}
}

/* ---- rings ---- */

static void lw_ring_copy_in(struct log_ring *r, uint64_t pos, const void *src, size_t n)
{
	size_t off = (size_t)(pos & r->mask), first = r->mask + 1 - off;

	if (first > n)
		first = n;
	memcpy(r->buf + off, src, first);
	memcpy(r->buf, (const char *)src + first, n - first);
}

static void lw_ring_copy_out(const struct log_ring *r, uint64_t pos, void *dst, size_t n)
{
	size_t off = (size_t)(pos & r->mask), first = r->mask + 1 - off;

	if (first > n)
		first = n;
	memcpy(dst, r->buf + off, first);
	memcpy((char *)dst + first, r->buf, n - first);
}

/* Producer side. A line longer than LOG_WRITER_LINE_MAX is cut and given its newline back. */
static bool lw_ring_put(struct log_ring *r, const char *line, size_t len)
{
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	bool cut = len > LOG_WRITER_LINE_MAX;
	uint32_t n = (uint32_t)(cut ? LOG_WRITER_LINE_MAX : len);

	if (r->mask + 1 - (size_t)(tail - head) < sizeof(n) + n) {
		atomic_store_explicit(&r->dropped,
		                      atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
		                      memory_order_relaxed);
		return false;
	}
	lw_ring_copy_in(r, tail, &n, sizeof(n));
	if (cut) {
		lw_ring_copy_in(r, tail + sizeof(n), line, n - 1);
		lw_ring_copy_in(r, tail + sizeof(n) + n - 1, "\n", 1);
	} else {
		lw_ring_copy_in(r, tail + sizeof(n), line, n);
	}
	atomic_store_explicit(&r->tail, tail + sizeof(n) + n, memory_order_release);
	return true;
}

static bool lw_ring_empty(struct log_ring *r)
{
	return atomic_load_explicit(&r->head, memory_order_relaxed) ==
	       atomic_load_explicit(&r->tail, memory_order_acquire);
}

/* Writer side: moves whole lines into the sink's pending buffer while they fit (all of them, counted
 * as lost, when the sink failed). Returns true when the ring is empty afterwards. */
static bool lw_ring_take(struct log_ring *r, struct log_sink *k)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint32_t n;

	while (head != tail) {
		lw_ring_copy_out(r, head, &n, sizeof(n));
		if (k->is_failed) {
			atomic_fetch_add(&k->lost, 1);
		} else {
			if (n > LOG_SINK_PEND - k->pend_len)
				break;
			lw_ring_copy_out(r, head + sizeof(n), k->pend + k->pend_len, n);
			k->pend_len += n;
		}
		head += sizeof(n) + n;
	}
	atomic_store_explicit(&r->head, head, memory_order_release);
	return head == tail;
}

static uint64_t lw_ring_count(const struct log_ring *r)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint64_t c = 0;
	uint32_t n;

	while (head != tail) {
		lw_ring_copy_out(r, head, &n, sizeof(n));
		head += sizeof(n) + n;
		c++;
	}
	return c;
}

static size_t lw_pow2(size_t n)
{
	size_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static int lw_rings_new(enum log_stream s, size_t cap)
{
	struct log_ring *rings;
	int i;

	cap = lw_pow2(cap);
	if (posix_memalign((void **)&rings, 64, sizeof(*rings) * (size_t)(lw.n_slots + 1)) != 0)
		return -ENOMEM;
	memset(rings, 0, sizeof(*rings) * (size_t)(lw.n_slots + 1));
	for (i = 0; i <= lw.n_slots; i++) {
		rings[i].mask = cap - 1;
		rings[i].buf = malloc(cap);
		if (rings[i].buf == NULL) {
			while (i-- > 0)
				free(rings[i].buf);
			free(rings);
			return -ENOMEM;
		}
	}
	lw.rings[s] = rings;
	return 0;
}

static void lw_rings_free(enum log_stream s)
{
	int i;

	if (lw.rings[s] == NULL)
		return;
	for (i = 0; i <= lw.n_slots; i++)
		free(lw.rings[s][i].buf);
	free(lw.rings[s]);
	lw.rings[s] = NULL;
}

/* ---- the writer thread ---- */

/* Fills the sink's pending buffer from every ring of every stream it carries. True when they are all
 * empty. */
static bool lw_fill(struct log_sink *k)
{
	bool empty = true;
	int s, i;

	if (k->pend_off > 0) {
		memmove(k->pend, k->pend + k->pend_off, k->pend_len - k->pend_off);
		k->pend_len -= k->pend_off;
		k->pend_off = 0;
	}
	for (s = 0; s < LOG_STREAM_COUNT; s++) {
		if (lw.sink_of[s] != k || lw.rings[s] == NULL)
			continue;
		for (i = 0; i <= lw.n_slots; i++)
			if (!lw_ring_take(&lw.rings[s][i], k))
				empty = false;
	}
	return empty;
}

/* Moves lines from the rings to the sink until both are empty or the sink is full. Returns true
 * when everything queued for it is written. */
static bool lw_service(struct log_sink *k)
{
	int round, rc;

	for (round = 0; round < LOG_SERVICE_ROUNDS; round++) {
		bool empty = lw_fill(k);

		if (k->pend_off < k->pend_len) {
			rc = lw_sink_flush(k);
			if (rc == 1) {
				k->is_blocked = true;
				return false;
			}
			if (rc < 0)
				lw_sink_fail(k, rc);
		}
		k->is_blocked = false;
		if (empty)
			return true;
	}
	return false;
}

/* SIGUSR1: a file sink lets go of the (renamed) file and opens its path anew; the file keeps what
 * was already written to it. When the open fails the old descriptor stays and the error is said. */
static void lw_reopen(struct log_sink *k)
{
	char msg[512];
	int fd, rc, n;

	if (!k->is_open || k->path == NULL)
		return;
	if (k->pend_off < k->pend_len && k->kind == LOG_SINK_FILE)
		lw_sink_flush(k); /* lines taken before the signal end in the old file */
	fd = lw_open_path(k->path);
	if (fd == -1) {
		n = snprintf(msg, sizeof(msg),
		             "jwtgate: accessLog %s: reopen failed: %s; still writing the old file\n",
		             k->path, strerror(errno));
		if (n > 0)
			log_writer_put(LOG_STREAM_PROCESS, msg, (size_t)n);
		return;
	}
	if (k->owns_fd)
		close(k->fd);
	rc = lw_sink_setup(k, fd, true);
	k->is_failed = rc < 0;
	k->is_blocked = false;
}

static bool lw_all_empty(void)
{
	int s, i;

	for (s = 0; s < LOG_STREAM_COUNT; s++) {
		if (lw.rings[s] == NULL)
			continue;
		if (lw.sink_of[s]->pend_off < lw.sink_of[s]->pend_len)
			return false;
		for (i = 0; i <= lw.n_slots; i++)
			if (!lw_ring_empty(&lw.rings[s][i]))
				return false;
	}
	return true;
}

/* Whether a sink is blocked (its lines wait for POLLOUT, not for a nap). */
static bool lw_any_blocked(void)
{
	return (lw.sinks[0].is_open && lw.sinks[0].is_blocked) ||
	       (lw.sinks[1].is_open && lw.sinks[1].is_blocked);
}

static void *lw_main(void *arg)
{
	struct pollfd pfd[3];
	sigset_t all;
	int s, i, nfd, timeout;
	uint64_t v;
	bool napped = false;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the main loop's */
	for (;;) {
		bool stopping = atomic_load(&lw.stop_requested), any_blocked = false, pending = false;

		if (atomic_exchange(&lw.reopen_requested, false)) {
			lw_reopen(&lw.sinks[0]);
			lw_reopen(&lw.sinks[1]);
		}
		for (i = 0; i < 2; i++)
			if (lw.sinks[i].is_open && !lw_service(&lw.sinks[i]) && !lw.sinks[i].is_blocked)
				pending = true; /* a round limit was hit: go on at once */
		if (stopping && (lw_all_empty() || lw_now_ms() >= lw.stop_deadline_ms))
			break;
		if (pending)
			continue;
		/* Nap first, with the flags down, so that producers make no system call: lines that come
		 * in the meantime are taken in one batch. Waking the writer for every line cost a write to
		 * the eventfd and two context switches per request (a third of a worker's throughput, bench
		 * "Access log cost"). At most LOG_WRITER_BATCH_MS later it sleeps for real. */
		if (!stopping && !lw_any_blocked() && !napped) {
			struct timespec nap = {0, LOG_WRITER_BATCH_MS * 1000000L};

			nanosleep(&nap, NULL);
			napped = true;
			continue;
		}
		napped = false;
		/* Sleep: raise the flags of the streams whose sink can take lines, then look again. */
		for (s = 0; s < LOG_STREAM_COUNT; s++)
			if (lw.rings[s] != NULL && !lw.sink_of[s]->is_blocked)
				atomic_store(&lw.sleeping[s], true);
		atomic_thread_fence(memory_order_seq_cst);
		for (s = 0; s < LOG_STREAM_COUNT && !pending; s++) {
			if (lw.rings[s] == NULL || lw.sink_of[s]->is_blocked)
				continue;
			for (i = 0; i <= lw.n_slots; i++)
				if (!lw_ring_empty(&lw.rings[s][i]))
					pending = true;
		}
		nfd = 0;
		pfd[nfd].fd = lw.efd;
		pfd[nfd++].events = POLLIN;
		for (i = 0; i < 2; i++) {
			if (lw.sinks[i].is_open && lw.sinks[i].is_blocked) {
				pfd[nfd].fd = lw.sinks[i].fd;
				pfd[nfd++].events = POLLOUT;
				any_blocked = true;
			}
		}
		timeout = any_blocked || stopping ? LOG_SINK_WAIT_MS : -1;
		if (stopping) {
			uint64_t now = lw_now_ms();

			timeout = lw.stop_deadline_ms > now ? (int)(lw.stop_deadline_ms - now) : 0;
			if (timeout > 50)
				timeout = 50;
		}
		if (!pending)
			poll(pfd, (nfds_t)nfd, timeout);
		for (s = 0; s < LOG_STREAM_COUNT; s++)
			atomic_store(&lw.sleeping[s], false);
		if (read(lw.efd, &v, sizeof(v)) == -1) {
			/* EAGAIN: nobody wrote it */
		}
	}
	/* Whatever is left was not written within the bound: counted, not kept. */
	for (s = 0; s < LOG_STREAM_COUNT; s++) {
		struct log_sink *k = lw.sink_of[s];

		if (lw.rings[s] == NULL)
			continue;
		for (i = 0; i <= lw.n_slots; i++)
			atomic_fetch_add(&k->lost, lw_ring_count(&lw.rings[s][i]));
	}
	for (i = 0; i < 2; i++) {
		struct log_sink *k = &lw.sinks[i];

		atomic_fetch_add(&k->lost, lw_count_lines(k->pend + k->pend_off, k->pend_len - k->pend_off));
		k->pend_off = 0;
		k->pend_len = 0;
	}
	return NULL;
}

int log_writer_start(int n_slots, size_t access_ring)
{
	int rc;

	if (atomic_load(&lw.state) != LOG_WRITER_DIRECT)
		return -EALREADY;
	rc = lw_sink_open_std(&lw.sinks[0], 2);
	if (rc < 0)
		return rc;
	lw.sink_of[LOG_STREAM_PROCESS] = &lw.sinks[0];
	if (access_ring < LOG_WRITER_RING_MIN)
		access_ring = LOG_WRITER_RING_MIN;
	if (access_ring > LOG_WRITER_RING_MAX)
		access_ring = LOG_WRITER_RING_MAX;
	lw.n_slots = n_slots > 0 ? n_slots : 0;
	atomic_store(&lw.stop_requested, false);
	atomic_store(&lw.reopen_requested, false);
	lw.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (lw.efd == -1)
		return -errno;
	rc = lw_rings_new(LOG_STREAM_PROCESS, LOG_RING_PROCESS);
	if (rc == 0 && lw.sink_of[LOG_STREAM_ACCESS] != NULL)
		rc = lw_rings_new(LOG_STREAM_ACCESS, access_ring);
	if (rc == 0) {
		rc = -pthread_create(&lw.thread, NULL, lw_main, NULL);
		if (rc == 0) {
			atomic_store(&lw.state, LOG_WRITER_QUEUED);
			return 0;
		}
	}
	lw_rings_free(LOG_STREAM_PROCESS);
	lw_rings_free(LOG_STREAM_ACCESS);
	close(lw.efd);
	lw.efd = -1;
	return rc;
}

void log_writer_attach(int slot)
{
	lw_slot = slot;
}

static void lw_wake(void)
{
	uint64_t one = 1;

	if (write(lw.efd, &one, sizeof(one)) == -1) {
		/* EAGAIN: the counter is already set, the writer wakes anyway */
	}
}

/* Not started, or stopped: the caller writes the line itself. Before the start that is a blocking
 * write to stderr (start-up errors must be seen); after the stop the sink's non-blocking descriptor
 * is given at most LOG_DIRECT_BOUND_MS. */
static bool lw_direct(enum log_stream s, const char *line, size_t len)
{
	struct log_sink *k = lw.sink_of[s];
	bool stopped = atomic_load(&lw.state) == LOG_WRITER_STOPPED;
	uint64_t deadline = lw_now_ms() + LOG_DIRECT_BOUND_MS;
	size_t off = 0;
	int fd;

	if (k == NULL && s != LOG_STREAM_PROCESS)
		return false;
	fd = k != NULL && k->is_open ? k->fd : 2;
	if (k != NULL && k->is_failed)
		goto drop;
	pthread_mutex_lock(&lw.direct_lock);
	while (off < len) {
		ssize_t r =
		        k != NULL && k->is_open && k->kind == LOG_SINK_SOCKET
		                ? send(fd, line + off, len - off, MSG_NOSIGNAL | (stopped ? MSG_DONTWAIT : 0))
		                : write(fd, line + off, len - off);

		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			uint64_t now = lw_now_ms();

			if (now >= deadline)
				break;
			poll(&p, 1, (int)(deadline - now));
			continue;
		}
		break;
	}
	pthread_mutex_unlock(&lw.direct_lock);
	if (off == len)
		return true;
drop:
	atomic_fetch_add(&lw.direct_dropped[s], 1);
	return false;
}

bool log_writer_put(enum log_stream s, const char *line, size_t len)
{
	struct log_ring *r;
	bool ok;

	if (atomic_load_explicit(&lw.state, memory_order_acquire) != LOG_WRITER_QUEUED)
		return lw_direct(s, line, len);
	if (lw.rings[s] == NULL)
		return false;
	if (lw_slot >= 0 && lw_slot < lw.n_slots) {
		ok = lw_ring_put(&lw.rings[s][lw_slot], line, len);
	} else {
		r = &lw.rings[s][lw.n_slots];
		pthread_mutex_lock(&lw.shared_lock[s]);
		ok = lw_ring_put(r, line, len);
		pthread_mutex_unlock(&lw.shared_lock[s]);
	}
	if (!ok)
		return false;
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&lw.sleeping[s], memory_order_relaxed) &&
	    atomic_exchange(&lw.sleeping[s], false))
		lw_wake();
	return true;
}

void log_writer_reopen(void)
{
	if (atomic_load(&lw.state) != LOG_WRITER_QUEUED)
		return;
	atomic_store(&lw.reopen_requested, true);
	lw_wake();
}

void log_writer_stop(uint64_t bound_ms)
{
	if (atomic_load(&lw.state) != LOG_WRITER_QUEUED)
		return;
	lw.stop_deadline_ms = lw_now_ms() + bound_ms;
	atomic_store(&lw.stop_requested, true);
	lw_wake();
	pthread_join(lw.thread, NULL);
	atomic_store(&lw.state, LOG_WRITER_STOPPED);
}

uint64_t log_writer_dropped(enum log_stream s)
{
	uint64_t n = atomic_load_explicit(&lw.direct_dropped[s], memory_order_relaxed);
	int i;

	if (lw.rings[s] != NULL)
		for (i = 0; i <= lw.n_slots; i++)
			n += atomic_load_explicit(&lw.rings[s][i].dropped, memory_order_relaxed);
	/* A sink shared by both streams (stderr) counts its own losses once, on the access stream. */
	if (lw.sink_of[s] != NULL &&
	    (s == LOG_STREAM_ACCESS || lw.sink_of[LOG_STREAM_ACCESS] != lw.sink_of[s]))
		n += atomic_load_explicit(&lw.sink_of[s]->lost, memory_order_relaxed);
	return n;
}

void log_writer_close(void)
{
	int i;

	log_writer_stop(0);
	atomic_store(&lw.state, LOG_WRITER_DIRECT);
	lw_rings_free(LOG_STREAM_PROCESS);
	lw_rings_free(LOG_STREAM_ACCESS);
	lw.sink_of[LOG_STREAM_PROCESS] = NULL;
	lw.sink_of[LOG_STREAM_ACCESS] = NULL;
	for (i = 0; i < 2; i++) {
		struct log_sink *k = &lw.sinks[i];

		if (!k->is_open)
			continue;
		if (k->owns_fd)
			close(k->fd);
		if (k->restore_flags != -1)
			fcntl(k->std_fd, F_SETFL, k->restore_flags);
		free(k->path);
		k->path = NULL;
		k->is_open = false;
	}
	if (lw.efd != -1)
		close(lw.efd);
	lw.efd = -1;
}
