/* tls_load.c: a closed-loop TLS load client for bench/run-tls.sh: one new TLS connection per request
 * (GET with Connection: close), C connections in flight, for D seconds, then prints one JGTLS line.
 * With --resume every connection slot offers the session (TLS 1.3 ticket) its previous connection
 * received, as a browser does, so the figure is the resumed handshake; without it every connection
 * is a full handshake. Neither wrk (its ssl.c never calls SSL_set_session) nor h2load resumes, hence
 * this client. One thread, epoll, OpenSSL, plain sockets; the peer is not verified (a benchmark).
 *
 *   tls_load --port P [--host 127.0.0.1] [--sni www.example.com] [--path /bar] [--connections 16]
 *            [--duration 3] [--resume] [--tls12]
 *
 * Output: JGTLS conns=N secs=S cps=X resumed=R full=F errors=E
 * Not installed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define TL_RESP_MAX 16384 /* a response larger than this is an error (the bench answers "ok") */

enum tl_state { TL_CONNECTING, TL_HANDSHAKE, TL_WRITING, TL_READING };

struct tl_slot {
	int fd;
	SSL *ssl;
	SSL_SESSION *sess; /* the last resumable session this slot received, or NULL */
	enum tl_state state;
	size_t sent;
	size_t got;
	char resp[TL_RESP_MAX];
};

static SSL_CTX *tl_ctx;
static struct sockaddr_in tl_addr;
static const char *tl_sni = "www.example.com";
static char tl_req[512];
static size_t tl_req_len;
static bool tl_resume;
static int tl_ep;
static unsigned long tl_done, tl_resumed, tl_errors;

static double tl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tl_close(struct tl_slot *s)
{
	if (s->ssl != NULL)
		SSL_free(s->ssl);
	s->ssl = NULL;
	if (s->fd != -1)
		close(s->fd);
	s->fd = -1;
}

static int tl_open(struct tl_slot *s)
{
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
	int one = 1;

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (s->fd == -1)
		return -1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->ssl = SSL_new(tl_ctx);
	if (s->ssl == NULL)
		return -1;
	SSL_set_fd(s->ssl, s->fd);
	SSL_set_tlsext_host_name(s->ssl, tl_sni);
	if (tl_resume && s->sess != NULL)
		SSL_set_session(s->ssl, s->sess);
	s->sent = s->got = 0;
	s->state = TL_CONNECTING;
	if (connect(s->fd, (struct sockaddr *)&tl_addr, sizeof(tl_addr)) == -1 && errno != EINPROGRESS)
		return -1;
	return epoll_ctl(tl_ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void tl_want(struct tl_slot *s, int err)
{
	struct epoll_event ev = {.events = err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN, .data.ptr = s};

	epoll_ctl(tl_ep, EPOLL_CTL_MOD, s->fd, &ev);
}

/* Whether s->resp holds a whole response: headers and Content-Length bytes of body (the bench
 * upstream always sends one). */
static bool tl_complete(struct tl_slot *s)
{
	char *end, *cl;
	long n;

	s->resp[s->got] = '\0';
	end = strstr(s->resp, "\r\n\r\n");
	if (end == NULL)
		return false;
	cl = strcasestr(s->resp, "\r\ncontent-length:");
	if (cl == NULL || cl > end)
		return true;
	n = strtol(cl + 17, NULL, 10);
	return (size_t)(end + 4 - s->resp) + (size_t)n <= s->got;
}

/* Drives one slot as far as it goes; returns 1 when its request is done, 0 to wait, -1 on error. */
static int tl_drive(struct tl_slot *s)
{
	int rc, err;

	switch (s->state) {
	case TL_CONNECTING: {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1 || soerr != 0)
			return -1;
		s->state = TL_HANDSHAKE;
	}
	/* fall through */
	case TL_HANDSHAKE:
		rc = SSL_connect(s->ssl);
		if (rc != 1) {
			err = SSL_get_error(s->ssl, rc);
			if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
				return -1;
			tl_want(s, err);
			return 0;
		}
		if (SSL_session_reused(s->ssl))
			tl_resumed++;
		s->state = TL_WRITING;
	/* fall through */
	case TL_WRITING:
		while (s->sent < tl_req_len) {
			rc = SSL_write(s->ssl, tl_req + s->sent, (int)(tl_req_len - s->sent));
			if (rc <= 0) {
				err = SSL_get_error(s->ssl, rc);
				if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
					return -1;
				tl_want(s, err);
				return 0;
			}
			s->sent += (size_t)rc;
		}
		s->state = TL_READING;
	/* fall through */
	case TL_READING:
		for (;;) {
			if (s->got >= sizeof(s->resp) - 1)
				return -1;
			rc = SSL_read(s->ssl, s->resp + s->got, (int)(sizeof(s->resp) - 1 - s->got));
			if (rc <= 0) {
				err = SSL_get_error(s->ssl, rc);
				if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
					tl_want(s, err);
					return 0;
				}
				return tl_complete(s) ? 1 : -1;
			}
			s->got += (size_t)rc;
			if (tl_complete(s))
				break;
		}
		if (strncmp(s->resp, "HTTP/1.1 2", 10) != 0)
			return -1;
		/* The TLS 1.3 tickets came before the response: keep the newest for the next connection.
		 * SSL_free() of a connection not marked shut down would mark its session not resumable
		 * (ssl_clear_bad_session), so mark it done: the response is whole, we close quietly. */
		SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		if (tl_resume) {
			SSL_SESSION *sess = SSL_get1_session(s->ssl);

			if (sess != NULL && SSL_SESSION_is_resumable(sess)) {
				SSL_SESSION_free(s->sess);
				s->sess = sess;
			} else {
				SSL_SESSION_free(sess);
			}
		}
		return 1;
	}
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"host", required_argument, NULL, 'h'},
	                                     {"port", required_argument, NULL, 'p'},
	                                     {"sni", required_argument, NULL, 's'},
	                                     {"path", required_argument, NULL, 'P'},
	                                     {"connections", required_argument, NULL, 'c'},
	                                     {"duration", required_argument, NULL, 'd'},
	                                     {"resume", no_argument, NULL, 'r'},
	                                     {"tls12", no_argument, NULL, '2'},
	                                     {NULL, 0, NULL, 0}};
	const char *host = "127.0.0.1", *path = "/bar";
	int port = 0, nconn = 16, opt, i;
	double duration = 3, t0, t1;
	bool tls12 = false;
	struct tl_slot *slots;
	struct epoll_event evs[256];

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			host = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 's':
			tl_sni = optarg;
			break;
		case 'P':
			path = optarg;
			break;
		case 'c':
			nconn = atoi(optarg);
			break;
		case 'd':
			duration = atof(optarg);
			break;
		case 'r':
			tl_resume = true;
			break;
		case '2':
			tls12 = true;
			break;
		default:
			fprintf(stderr, "usage: see bench/tls_load.c\n");
			return 2;
		}
	}
	if (port <= 0 || nconn <= 0 || nconn > 4096 || duration <= 0) {
		fprintf(stderr, "tls_load: --port required; --connections 1..4096; --duration > 0\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	tl_addr.sin_family = AF_INET;
	tl_addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &tl_addr.sin_addr) != 1) {
		fprintf(stderr, "tls_load: --host must be an IPv4 address\n");
		return 2;
	}
	tl_req_len =
	        (size_t)snprintf(tl_req, sizeof(tl_req),
	                         "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, tl_sni);
	tl_ctx = SSL_CTX_new(TLS_client_method());
	if (tl_ctx == NULL)
		return 1;
	SSL_CTX_set_min_proto_version(tl_ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(tl_ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
	SSL_CTX_set_verify(tl_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(tl_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_set_alpn_protos(tl_ctx, (const unsigned char *)"\x08http/1.1", 9);
	tl_ep = epoll_create1(0);
	slots = calloc((size_t)nconn, sizeof(*slots));
	if (slots == NULL || tl_ep == -1)
		return 1;
	for (i = 0; i < nconn; i++) {
		slots[i].fd = -1;
		if (tl_open(&slots[i]) != 0) {
			fprintf(stderr, "tls_load: cannot connect: %s\n", strerror(errno));
			return 1;
		}
	}
	t0 = tl_now();
	t1 = t0;
	while (t1 - t0 < duration) {
		int n = epoll_wait(tl_ep, evs, 256, 100);

		for (i = 0; i < n; i++) {
			struct tl_slot *s = evs[i].data.ptr;
			int rc = tl_drive(s);

			if (rc == 0)
				continue;
			if (rc == 1)
				tl_done++;
			else
				tl_errors++;
			tl_close(s);
			if (tl_open(s) != 0) {
				tl_errors++;
				tl_close(s);
			}
		}
		t1 = tl_now();
		if (tl_errors > 1000 && tl_done == 0)
			break;
	}
	printf("JGTLS conns=%lu secs=%.3f cps=%.1f resumed=%lu full=%lu errors=%lu\n", tl_done, t1 - t0,
	       (double)tl_done / (t1 - t0), tl_resumed, tl_done > tl_resumed ? tl_done - tl_resumed : 0,
	       tl_errors);
	for (i = 0; i < nconn; i++) {
		tl_close(&slots[i]);
		SSL_SESSION_free(slots[i].sess);
	}
	free(slots);
	SSL_CTX_free(tl_ctx);
	close(tl_ep);
	return tl_errors > 0 && tl_done == 0 ? 1 : 0;
}
