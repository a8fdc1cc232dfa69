/* codec_harness.c: see codec_harness.h. */
#include "codec_harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>

#include "jwt/auth.h"
#include "config/config.h"
#include "codec/http1.h"
#include "core/log.h"
#include "route/router.h"
#include "server/worker.h"

#ifndef JG_SOURCE_ROOT
#error "JG_SOURCE_ROOT must name the source tree (tests/meson.build sets it)"
#endif

#define FH_MAX_STEPS   400 /* loop turns per settle; a settled run needs far fewer */
#define FH_QUIET_STEPS 4   /* turns without any movement that count as settled */

/* ---- bytes ---- */

void fh_bytes_add(struct fh_bytes *b, const void *data, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (b->p == NULL)
			abort();
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

void fh_bytes_free(struct fh_bytes *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void fh_dump(const char *label, const uint8_t *p, size_t n)
{
	size_t i;

	fprintf(stderr, "%s (%zu bytes): \"", label, n);
	for (i = 0; i < n && i < 4096; i++) {
		uint8_t ch = p[i];

		if (ch == '\r')
			fputs("\\r", stderr);
		else if (ch == '\n')
			fputs("\\n", stderr);
		else if (ch == '"' || ch == '\\')
			fprintf(stderr, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(stderr, "\\x%02x", ch);
		else
			fputc(ch, stderr);
	}
	fputs(i < n ? "\"...\n" : "\"\n", stderr);
}

size_t fh_count(const uint8_t *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle), i = 0, c = 0;

	while (k > 0 && i + k <= n) {
		if (memcmp(hay + i, needle, k) == 0) {
			c++;
			i += k;
		} else {
			i++;
		}
	}
	return c;
}

/* ---- the reference request framer ---- */

static bool fh_tchar(uint8_t ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool fh_case_eq(const uint8_t *a, size_t n, const char *b)
{
	size_t i;

	if (strlen(b) != n)
		return false;
	for (i = 0; i < n; i++) {
		uint8_t x = a[i], y = (uint8_t)b[i];

		if (x >= 'A' && x <= 'Z')
			x = (uint8_t)(x + 32);
		if (x != y)
			return false;
	}
	return true;
}

/* The end of the line at pos (index of its CR), -1 when the line is not complete, -2 on a bare CR
 * or LF. */
static long fh_line(const uint8_t *b, size_t len, size_t pos)
{
	size_t i;

	for (i = pos; i < len; i++) {
		if (b[i] == '\n')
			return -2;
		if (b[i] == '\r') {
			if (i + 1 == len)
				return -1;
			return b[i + 1] == '\n' ? (long)i : -2;
		}
	}
	return -1;
}

#define FH_BAD(text)                                                                                         \
	do {                                                                                                 \
		*why = (text);                                                                               \
		return FH_FRAME_BAD;                                                                         \
	} while (0)

/* A partial line must already be valid as far as it goes: only field-value bytes (the strictest
 * check that holds for every kind of line is "no CTL but HTAB"). */
static enum fh_frame fh_partial_line(const uint8_t *b, size_t len, size_t pos, const char **why)
{
	size_t i;

	for (i = pos; i < len; i++)
		if ((b[i] < 0x20 && b[i] != '\t' && b[i] != '\r') || b[i] == 0x7f)
			FH_BAD("control byte in a partial line");
	return FH_FRAME_PARTIAL;
}

/* The header fields from pos to the empty line: framing headers counted and checked. pos ends after
 * the empty line. */
struct fh_framing {
	size_t cl_count, te_count;
	uint64_t content_length;
};

static enum fh_frame fh_fields(const uint8_t *b, size_t len, size_t *ppos, struct fh_framing *fr,
                               const char **why)
{
	size_t pos = *ppos, i;
	long e;

	for (;;) {
		size_t n, v, ve;

		e = fh_line(b, len, pos);
		if (e == -2)
			FH_BAD("bare CR or LF in the head");
		if (e == -1)
			return fh_partial_line(b, len, pos, why);
		if ((size_t)e == pos) {
			pos += 2;
			break;
		}
		for (n = pos; n < (size_t)e && fh_tchar(b[n]); n++)
			;
		if (n == pos || n >= (size_t)e || b[n] != ':')
			FH_BAD("bad header name");
		for (v = n + 1; v < (size_t)e && (b[v] == ' ' || b[v] == '\t'); v++)
			;
		for (ve = (size_t)e; ve > v && (b[ve - 1] == ' ' || b[ve - 1] == '\t'); ve--)
			;
		for (i = v; i < ve; i++)
			if ((b[i] < 0x20 && b[i] != '\t') || b[i] == 0x7f)
				FH_BAD("control byte in a header value");
		if (fr != NULL && fh_case_eq(b + pos, n - pos, "content-length")) {
			fr->cl_count++;
			if (ve == v || ve - v > 18 || (ve - v > 1 && b[v] == '0'))
				FH_BAD("bad Content-Length");
			fr->content_length = 0;
			for (i = v; i < ve; i++) {
				if (b[i] < '0' || b[i] > '9')
					FH_BAD("bad Content-Length");
				fr->content_length = fr->content_length * 10 + (uint64_t)(b[i] - '0');
			}
		} else if (fr != NULL && fh_case_eq(b + pos, n - pos, "transfer-encoding")) {
			fr->te_count++;
			if (!fh_case_eq(b + v, ve - v, "chunked"))
				FH_BAD("Transfer-Encoding other than chunked");
		}
		pos = (size_t)e + 2;
	}
	if (fr != NULL && (fr->cl_count > 1 || fr->te_count > 1 || (fr->cl_count && fr->te_count)))
		FH_BAD("ambiguous framing (Content-Length/Transfer-Encoding)");
	*ppos = pos;
	return FH_FRAME_COMPLETE;
}

/* A chunked body with its trailer section from *ppos (no chunk extensions: the proxy frames chunks
 * itself). */
static enum fh_frame fh_chunked(const uint8_t *b, size_t len, size_t *ppos, const char **why)
{
	size_t pos = *ppos, i;
	long e;

	for (;;) {
		uint64_t size = 0;
		size_t digits = 0;

		e = fh_line(b, len, pos);
		if (e == -2)
			FH_BAD("bare CR or LF in a chunk-size line");
		if (e == -1) {
			for (i = pos; i < len; i++)
				if (!(isxdigit(b[i]) || (b[i] == '\r' && i + 1 == len)))
					FH_BAD("bad chunk-size line");
			return FH_FRAME_PARTIAL;
		}
		for (i = pos; i < (size_t)e; i++) {
			uint8_t ch = b[i];

			if (!isxdigit(ch) || ++digits > 15)
				FH_BAD("bad chunk-size line");
			size = size * 16 + (uint64_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
		}
		if (digits == 0)
			FH_BAD("empty chunk size");
		pos = (size_t)e + 2;
		if (size == 0)
			break;
		if (len - pos < size + 2) {
			if (len - pos > size && b[pos + size] != '\r')
				FH_BAD("chunk data not followed by CRLF");
			return FH_FRAME_PARTIAL;
		}
		if (b[pos + size] != '\r' || b[pos + size + 1] != '\n')
			FH_BAD("chunk data not followed by CRLF");
		pos += size + 2;
	}
	*ppos = pos;
	return fh_fields(b, len, ppos, NULL, why); /* trailer section */
}

enum fh_frame fh_frame_request(const uint8_t *b, size_t len, struct fh_request *out, const char **why)
{
	struct fh_framing fr = {0};
	size_t pos, i, m;
	enum fh_frame st;
	long e;

	memset(out, 0, sizeof(*out));
	*why = NULL;
	e = fh_line(b, len, 0);
	if (e == -2)
		FH_BAD("bare CR or LF in the request line");
	if (e == -1)
		return fh_partial_line(b, len, 0, why);
	/* METHOD SP origin-form SP HTTP/1.1 */
	for (m = 0; m < (size_t)e && fh_tchar(b[m]); m++)
		;
	if (m == 0 || m >= (size_t)e || b[m] != ' ')
		FH_BAD("bad method");
	memcpy(out->method, b, m < sizeof(out->method) - 1 ? m : sizeof(out->method) - 1);
	out->is_head = m == 4 && memcmp(b, "HEAD", 4) == 0;
	i = m + 1;
	if (i >= (size_t)e || b[i] != '/')
		FH_BAD("target is not origin-form");
	/* No whitespace or control byte (RFC 9112 section 3.2); bytes above 0x7f pass, as the codec lets
	 * them (h1_on_url_complete) and upstream servers commonly do. */
	while (i < (size_t)e && b[i] > 0x20 && b[i] != 0x7f)
		i++;
	if ((size_t)e - i != 9 || memcmp(b + i, " HTTP/1.1", 9) != 0)
		FH_BAD("bad request-line tail (target byte or version)");
	pos = (size_t)e + 2;
	st = fh_fields(b, len, &pos, &fr, why);
	if (st != FH_FRAME_COMPLETE)
		return st;
	out->head_len = pos;
	if (fr.te_count > 0) {
		st = fh_chunked(b, len, &pos, why);
		if (st != FH_FRAME_COMPLETE)
			return st;
	} else {
		if (len - pos < fr.content_length)
			return FH_FRAME_PARTIAL;
		pos += (size_t)fr.content_length;
	}
	out->total_len = pos;
	return FH_FRAME_COMPLETE;
}

enum fh_frame fh_frame_response(const uint8_t *b, size_t len, bool is_head, bool eof, int *status,
                                size_t *total, const char **why)
{
	struct fh_framing fr = {0};
	size_t pos;
	enum fh_frame st;
	long e;
	int s;

	*why = NULL;
	*status = 0;
	*total = 0;
	e = fh_line(b, len, 0);
	if (e == -2)
		FH_BAD("bare CR or LF in the status line");
	if (e == -1)
		return fh_partial_line(b, len, 0, why);
	if (e < 13 || memcmp(b, "HTTP/1.1 ", 9) != 0 || !isdigit(b[9]) || !isdigit(b[10]) ||
	    !isdigit(b[11]) || b[12] != ' ')
		FH_BAD("bad status line");
	s = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
	if (s < 100 || s > 599)
		FH_BAD("status out of range");
	for (pos = 13; pos < (size_t)e; pos++)
		if ((b[pos] < 0x20 && b[pos] != '\t') || b[pos] == 0x7f)
			FH_BAD("control byte in the reason");
	*status = s;
	pos = (size_t)e + 2;
	st = fh_fields(b, len, &pos, &fr, why);
	if (st != FH_FRAME_COMPLETE)
		return st;
	if (s < 200 || s == 204 || s == 304 || is_head) {
		if (s < 200 && (fr.cl_count || fr.te_count))
			FH_BAD("framing headers in an interim response");
		if (s == 204 && (fr.cl_count || fr.te_count))
			FH_BAD("framing headers in a 204");
	} else if (fr.te_count > 0) {
		st = fh_chunked(b, len, &pos, why);
		if (st != FH_FRAME_COMPLETE)
			return st;
	} else if (fr.cl_count > 0) {
		if (len - pos < fr.content_length)
			return FH_FRAME_PARTIAL;
		pos += (size_t)fr.content_length;
	} else {
		/* delimited by close: complete only at EOF */
		if (!eof)
			return FH_FRAME_PARTIAL;
		pos = len;
	}
	*total = pos;
	return FH_FRAME_COMPLETE;
}

/* ---- process-wide setup ---- */

static struct snapshot *fh_snap;
static int fh_proxy_listen_fd = -1; /* worker_init wants one per listener; nobody connects to it */
static int fh_up_listen_fd = -1;    /* the fake upstream's */

static int fh_listen_loopback(uint16_t *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(fd, 128) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == -1) {
		perror("fuzz harness: listen");
		abort();
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static void fh_init(void)
{
	static const char yaml_fmt[] = "listeners:\n"
	                               "  - {name: http, address: 127.0.0.1:%u}\n"
	                               "backends:\n"
	                               "  - name: up\n"
	                               "    endpoints: [{ip: {address: 127.0.0.1, port: %u}}]\n"
	                               "httpRoutes:\n"
	                               "  - name: secure\n"
	                               "    hostnames: [\"secure.example\"]\n"
	                               "    rules:\n"
	                               "      - backendRefs: [{name: up}]\n"
	                               "  - name: open\n"
	                               "    rules:\n"
	                               "      - matches: [{path: {type: PathPrefix, value: /}}]\n"
	                               "        backendRefs: [{name: up}]\n"
	                               "securityPolicies:\n"
	                               "  - name: jwt\n"
	                               "    targetRefs: [{kind: HTTPRoute, name: secure}]\n"
	                               "    jwt:\n"
	                               "      providers:\n"
	                               "        - name: p\n"
	                               "          localJWKS: {type: File, file: %s/conf/jwks.json}\n"
	                               "limits: {maxHeaderBytes: 4KiB, maxHeaderCount: 32, maxRequestLine: "
	                               "1KiB, maxBodySize: 4KiB}\n"
	                               "tokenCache: {size: 16}\n";
	char dir[] = "/tmp/jg-fuzz-codec-XXXXXX", path[64];
	struct config *cfg = NULL;
	struct auth_shared *auth;
	uint16_t pport, uport;
	FILE *f;

	log_set_level(LOG_LEVEL_ERROR);
	signal(SIGPIPE, SIG_IGN); /* as main.c: a write to a closed peer is an error, not a signal */
	fh_proxy_listen_fd = fh_listen_loopback(&pport);
	fh_up_listen_fd = fh_listen_loopback(&uport);
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/c.yaml", dir);
	f = fopen(path, "w");
	if (f == NULL)
		abort();
	fprintf(f, yaml_fmt, pport, uport, JG_SOURCE_ROOT);
	fclose(f);
	if (config_load(path, stderr, &cfg) != 0)
		abort();
	unlink(path);
	rmdir(dir);
	auth = auth_shared_new(cfg, stderr);
	if (auth == NULL)
		abort();
	fh_snap = snapshot_new(cfg, router_new(cfg), auth);
}

/* ---- one run ---- */

struct fh_up {
	struct fh_up *next;
	int fd;
	struct event ev;
	struct fh_bytes in;  /* everything received */
	size_t framed;       /* bytes of `in` that were complete requests */
	bool head_counted;   /* the head of the request at `framed` was counted */
	struct fh_bytes out; /* to send at the next turn */
	size_t out_off;
	struct fh_bytes later; /* then this, one turn after */
	bool close_after;
	bool closed;
};

static struct {
	struct worker w;
	const struct fh_opts *opts;
	struct fh_result *res;
	struct evconnlistener *up_listener;
	struct fh_up *ups;
	int client_fd;
	const uint8_t *client;
	size_t client_len;
	uint64_t moves; /* anything seen to happen: settles the loop */
} fh;

static void fh_answer(struct fh_up *u, const struct fh_request *r)
{
	unsigned n = ++fh.res->upstream_answers;
	char buf[256];
	int len;
	enum fh_answer a = fh.opts->answer;

	if (a == FH_ANSWER_SILENT)
		return;
	if (a == FH_ANSWER_BYTES && n == 1) {
		size_t split = fh.opts->resp_split < fh.opts->resp_len ? fh.opts->resp_split : 0;

		fh_bytes_add(&u->out, fh.opts->resp, split ? split : fh.opts->resp_len);
		if (split)
			fh_bytes_add(&u->later, fh.opts->resp + split, fh.opts->resp_len - split);
		u->close_after = fh.opts->close_after_resp;
		return;
	}
	if (a == FH_ANSWER_BYTES)
		a = FH_ANSWER_LENGTH;
	switch (a) {
	case FH_ANSWER_CHUNKED:
		len = snprintf(buf, sizeof(buf),
		               "HTTP/1.1 200 OK\r\n" FH_MARK "%u\r\ntransfer-encoding: chunked\r\n\r\n%s", n,
		               r->is_head ? "" : "3\r\nabc\r\n0\r\nx-trailer: t\r\n\r\n");
		break;
	case FH_ANSWER_CLOSE:
		len = snprintf(buf, sizeof(buf),
		               "HTTP/1.1 200 OK\r\n" FH_MARK "%u\r\nconnection: close\r\n\r\n%s", n,
		               r->is_head ? "" : "until-close");
		u->close_after = true;
		break;
	case FH_ANSWER_NO_CONTENT:
		len = snprintf(buf, sizeof(buf), "HTTP/1.1 204 No Content\r\n" FH_MARK "%u\r\n\r\n", n);
		break;
	default:
		len = snprintf(buf, sizeof(buf),
		               "HTTP/1.1 200 OK\r\n" FH_MARK "%u\r\ncontent-length: 2\r\n\r\n%s", n,
		               r->is_head ? "" : "ok");
		break;
	}
	fh_bytes_add(&u->out, buf, (size_t)len);
}

static void fh_up_close(struct fh_up *u)
{
	if (u->closed)
		return;
	event_del(&u->ev);
	close(u->fd);
	u->closed = true;
	fh.moves++;
}

/* Frames what arrived; answers each complete request; a broken frame is a proxy bug. */
static void fh_up_frame(struct fh_up *u)
{
	while (u->framed < u->in.len) {
		struct fh_request r;
		const char *why;
		enum fh_frame st = fh_frame_request(u->in.p + u->framed, u->in.len - u->framed, &r, &why);

		if (st == FH_FRAME_BAD) {
			fprintf(stderr, "fuzz harness: the proxy sent a malformed request upstream: %s\n",
			        why);
			fh_dump("upstream received", u->in.p, u->in.len);
			fh_dump("client sent", fh.client, fh.client_len);
			abort();
		}
		if (r.head_len > 0 && !u->head_counted) {
			u->head_counted = true;
			fh.res->upstream_heads++;
			if (fh.opts->answer == FH_ANSWER_EARLY)
				fh_answer(u, &r); /* before the body: the proxy must stop sending it */
			if (fh.opts->answer == FH_ANSWER_RESET) {
				fh_up_close(u);
				return;
			}
		}
		if (st == FH_FRAME_PARTIAL)
			return;
		fh.res->upstream_requests++;
		u->framed += r.total_len;
		u->head_counted = false;
		if (fh.opts->answer != FH_ANSWER_EARLY)
			fh_answer(u, &r);
	}
}

static void fh_up_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct fh_up *u = arg;
	uint8_t buf[16384];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n > 0) {
			fh_bytes_add(&u->in, buf, (size_t)n);
			fh.moves++;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			break;
		fh_up_frame(u);
		fh_up_close(u); /* EOF or reset: the proxy gave up this connection */
		return;
	}
	fh_up_frame(u);
}

static void fh_up_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                            void *arg)
{
	struct fh_up *u = calloc(1, sizeof(*u));

	if (u == NULL)
		abort();
	evutil_make_socket_nonblocking(fd);
	u->fd = fd;
	u->next = fh.ups;
	fh.ups = u;
	fh.res->upstream_conns++;
	fh.moves++;
	event_assign(&u->ev, fh.w.base, fd, EV_READ | EV_PERSIST, fh_up_on_read, u);
	event_add(&u->ev, NULL);
}

/* Sends what the fake upstream has to send (one stage per turn). */
static void fh_up_send(void)
{
	struct fh_up *u;

	for (u = fh.ups; u != NULL; u = u->next) {
		if (u->closed)
			continue;
		while (u->out_off < u->out.len) {
			ssize_t n = send(u->fd, u->out.p + u->out_off, u->out.len - u->out_off, MSG_NOSIGNAL);

			if (n <= 0)
				break;
			u->out_off += (size_t)n;
			fh.moves++;
		}
		if (u->out_off < u->out.len)
			continue;
		u->out.len = u->out_off = 0;
		if (u->later.len > 0) {
			fh_bytes_add(&u->out, u->later.p, u->later.len);
			u->later.len = 0;
			continue;
		}
		if (u->close_after)
			fh_up_close(u);
	}
}

static void fh_client_read(void)
{
	uint8_t buf[16384];

	if (fh.client_fd < 0 || fh.res->client_eof)
		return;
	for (;;) {
		ssize_t n = recv(fh.client_fd, buf, sizeof(buf), 0);

		if (n > 0) {
			fh_bytes_add(&fh.res->client_in, buf, (size_t)n);
			fh.moves++;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		fh.res->client_eof = true; /* closed (or reset) by the proxy */
		fh.moves++;
		return;
	}
}

/* Turns the loop until nothing moved for FH_QUIET_STEPS turns (bounded: FH_MAX_STEPS). */
static void fh_settle(void)
{
	unsigned quiet = 0, steps;

	for (steps = 0; steps < FH_MAX_STEPS && quiet < FH_QUIET_STEPS; steps++) {
		uint64_t before = fh.moves;
		size_t conns = fh.w.n_conns;

		event_base_loop(fh.w.base, EVLOOP_NONBLOCK);
		fh_client_read();
		fh_up_send();
		quiet = fh.moves == before && conns == fh.w.n_conns ? quiet + 1 : 0;
	}
}

void fh_run(const uint8_t *client, size_t client_len, const struct fh_opts *opts, struct fh_result *res)
{
	struct sockaddr_in peer;
	int sv[2], lfd, ufd;
	size_t off = 0;
	unsigned steps;

	if (fh_snap == NULL)
		fh_init();
	memset(res, 0, sizeof(*res));
	memset(&fh, 0, sizeof(fh));
	fh.opts = opts;
	fh.res = res;
	fh.client_fd = -1;
	fh.client = client;
	fh.client_len = client_len;
	lfd = dup(fh_proxy_listen_fd);
	ufd = dup(fh_up_listen_fd);
	if (lfd == -1 || ufd == -1 || worker_init(&fh.w, 0, fh_snap, &lfd, NULL) != 0)
		abort();
	fh.up_listener = evconnlistener_new(fh.w.base, fh_up_on_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1, ufd);
	if (fh.up_listener == NULL)
		abort();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
		abort();
	fh.client_fd = sv[0];
	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	peer.sin_port = htons(40000);
	/* As worker_on_accept: the connection is counted, then the codec owns the socket. */
	atomic_fetch_add(&worker_open_conns, 1);
	if (http1_conn_accept(&fh.w, sv[1], (struct sockaddr *)&peer, sizeof(peer), 0) < 0)
		abort();
	do {
		size_t n = client_len - off;

		if (opts->client_chunk > 0 && n > opts->client_chunk)
			n = opts->client_chunk;
		while (n > 0) {
			ssize_t k = send(fh.client_fd, client + off, n, MSG_NOSIGNAL);

			if (k > 0) {
				off += (size_t)k;
				n -= (size_t)k;
				continue;
			}
			if (k == -1 && errno == EAGAIN) {
				/* The proxy stopped reading (its bounds): let it run; give up if it stays so.
				 */
				uint64_t before = fh.moves;

				fh_settle();
				if (fh.moves == before)
					break;
				continue;
			}
			off = client_len; /* EPIPE: the proxy closed */
			break;
		}
		fh_settle();
	} while (off < client_len && !res->client_eof);
	if (opts->drain) {
		/* As worker_on_stop: every connection is asked to finish what it has and close. */
		struct worker_conn *wc, *next;

		for (wc = fh.w.conns; wc != NULL; wc = next) {
			next = wc->next;
			wc->drain(wc);
		}
		fh_settle();
	}
	if (opts->client_half_close && !res->client_eof) {
		shutdown(fh.client_fd, SHUT_WR);
		fh_settle();
	}
	/* The client goes away. A FIN reads like a half-close, so a connection may wait for its
	 * upstream to answer what the client sent (http1.c h1_on_peer_eof) until a write fails. */
	close(fh.client_fd);
	fh.client_fd = -1;
	fh_settle();
	/* Then the upstream goes away: the pool lets go of its connections, the exchanges fail, and
	 * with both peers gone every downstream connection must end. */
	{
		struct fh_up *u;

		for (u = fh.ups; u != NULL; u = u->next)
			fh_up_close(u);
	}
	fh_settle();
	/* A connection may still wait on a timer of its own (a flooder's GOAWAY is flushed and the socket
	 * closed within H2_ABORT_MS, lingering after our FIN): the loop never sleeps, so end it as the
	 * worker's drain deadline does (worker_on_drain_timeout). */
	if (fh.w.n_conns > 0) {
		struct worker_conn *wc, *next;

		for (wc = fh.w.conns; wc != NULL; wc = next) {
			next = wc->next;
			wc->abort(wc);
		}
		for (steps = 0; steps < FH_MAX_STEPS && fh.w.n_conns > 0; steps++)
			event_base_loop(fh.w.base, EVLOOP_NONBLOCK);
	}
	if (fh.w.n_conns != 0) {
		fprintf(stderr, "fuzz harness: a downstream connection outlives its abort\n");
		fh_dump("client sent", fh.client, fh.client_len);
		abort();
	}
	fh_settle();
	for (;;) { /* connections the proxy opened but the listener did not take yet */
		int fd = accept4(evconnlistener_get_fd(fh.up_listener), NULL, NULL, SOCK_CLOEXEC);

		if (fd == -1)
			break;
		close(fd);
	}
	evconnlistener_free(fh.up_listener);
	event_base_loop(fh.w.base, EVLOOP_NONBLOCK);
	event_base_loop(fh.w.base, EVLOOP_NONBLOCK);
	worker_free(&fh.w);
	if (atomic_load(&worker_open_conns) != 0) {
		fprintf(stderr, "fuzz harness: worker_open_conns is %u after the run\n",
		        atomic_load(&worker_open_conns));
		abort();
	}
	while (fh.ups != NULL) {
		struct fh_up *u = fh.ups;

		if (getenv("FH_VERBOSE") != NULL) /* replaying by hand: show what the upstream saw */
			fh_dump("upstream received", u->in.p, u->in.len);
		fh.ups = u->next;
		fh_bytes_free(&u->in);
		fh_bytes_free(&u->out);
		fh_bytes_free(&u->later);
		free(u);
	}
}

void fh_result_free(struct fh_result *res)
{
	if (getenv("FH_VERBOSE") != NULL) {
		fh_dump("client got", res->client_in.p, res->client_in.len);
		fprintf(stderr,
		        "upstream: %u connections, %u heads, %u whole requests, %u answers; client eof %d\n",
		        res->upstream_conns, res->upstream_heads, res->upstream_requests,
		        res->upstream_answers, res->client_eof);
	}
	fh_bytes_free(&res->client_in);
}
