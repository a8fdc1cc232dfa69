/* body_upstream.c: an upload sink for bench/run-body.sh. One thread, epoll, HTTP/1.1 keep-alive:
 * reads each request's head, reads and drops its whole body (Content-Length or chunked; RFC 9112
 * section 7.1), and only then answers 200 "ok". nginx's `return 200` answers as soon as the head is in
 * and discards the body afterwards, which makes a proxy see the response before the request ended
 * (a different, rarer case); an application reads the body first, as this does.
 *
 *   body_upstream --port P
 *
 * Not a general server: no pipelining across a response that did not fit the socket (the answer is
 * 40 bytes), heads up to 8 KiB, chunk extensions skipped, trailers skipped. A malformed request
 * closes the connection. Not installed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BU_HEAD_MAX 8192        /* request head bytes; a longer head closes the connection */
#define BU_READ     (64 * 1024) /* bytes per recv */

enum bu_state { BU_HEAD, BU_SIZED, BU_CHUNK_LINE, BU_CHUNK_DATA, BU_CHUNK_CRLF, BU_TRAILER };

struct bu_conn {
	int fd;
	enum bu_state state;
	uint64_t left; /* BU_SIZED, BU_CHUNK_DATA: body bytes still to drop; BU_CHUNK_CRLF: 2 */
	size_t hlen;   /* bytes in head (BU_HEAD) or in the current chunk-size/trailer line */
	char head[BU_HEAD_MAX];
};

static const char bu_answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* The request head in c->head (hlen bytes, ending in CRLF CRLF): sets the body state. Returns 0, or
 * -1 for a head this sink does not understand. */
static int bu_on_head(struct bu_conn *c)
{
	char *p = c->head, *end = c->head + c->hlen, *eol;

	c->state = BU_SIZED;
	c->left = 0;
	p = memchr(p, '\n', (size_t)(end - p)); /* skip the request line */
	while (p != NULL && ++p < end && (eol = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (eol - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
			c->left = strtoull(p + 15, NULL, 10);
		else if (eol - p > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
			c->state = BU_CHUNK_LINE;
			c->hlen = 0;
		}
		p = eol;
	}
	return 0;
}

static int bu_answer_request(struct bu_conn *c)
{
	ssize_t n = send(c->fd, bu_answer, sizeof(bu_answer) - 1, MSG_NOSIGNAL);

	c->state = BU_HEAD;
	c->hlen = 0;
	return n == (ssize_t)(sizeof(bu_answer) - 1) ? 0 : -1;
}

/* Feeds len bytes read from the connection. Returns 0, or -1 to close. */
static int bu_feed(struct bu_conn *c, const char *d, size_t len)
{
	while (len > 0) {
		size_t take;
		const char *nl;

		switch (c->state) {
		case BU_HEAD:
			take = len < BU_HEAD_MAX - c->hlen ? len : BU_HEAD_MAX - c->hlen;
			if (take == 0)
				return -1;
			memcpy(c->head + c->hlen, d, take);
			{
				size_t from = c->hlen >= 3 ? c->hlen - 3 : 0, i;
				size_t n = c->hlen + take;

				for (i = from;
				     i + 3 < n && !(c->head[i] == '\r' && c->head[i + 1] == '\n' &&
				                    c->head[i + 2] == '\r' && c->head[i + 3] == '\n');
				     i++)
					;
				if (i + 3 >= n) {
					c->hlen = n;
					d += take;
					len -= take;
					break;
				}
				take = i + 4 - c->hlen;
				c->hlen = i + 4;
			}
			d += take;
			len -= take;
			if (bu_on_head(c) != 0)
				return -1;
			if (c->state == BU_SIZED && c->left == 0 && bu_answer_request(c) != 0)
				return -1;
			break;
		case BU_SIZED:
			take = len < c->left ? len : (size_t)c->left;
			c->left -= take;
			d += take;
			len -= take;
			if (c->left == 0 && bu_answer_request(c) != 0)
				return -1;
			break;
		case BU_CHUNK_LINE:
		case BU_TRAILER:
			nl = memchr(d, '\n', len);
			take = nl != NULL ? (size_t)(nl - d) + 1 : len;
			if (c->state == BU_CHUNK_LINE && c->hlen + take < 64) {
				memcpy(c->head + c->hlen, d, take);
			} else if (c->state == BU_CHUNK_LINE) {
				return -1;
			}
			c->hlen += take;
			d += take;
			len -= take;
			if (nl == NULL)
				break;
			if (c->state == BU_TRAILER) {
				if (c->hlen <= 2) { /* the empty line */
					if (bu_answer_request(c) != 0)
						return -1;
				}
				c->hlen = 0;
				break;
			}
			c->head[c->hlen] = '\0';
			c->left = strtoull(c->head, NULL, 16);
			c->hlen = 0;
			c->state = c->left == 0 ? BU_TRAILER : BU_CHUNK_DATA;
			break;
		case BU_CHUNK_DATA:
			take = len < c->left ? len : (size_t)c->left;
			c->left -= take;
			d += take;
			len -= take;
			if (c->left == 0) {
				c->state = BU_CHUNK_CRLF;
				c->left = 2;
			}
			break;
		case BU_CHUNK_CRLF:
			take = len < c->left ? len : (size_t)c->left;
			c->left -= take;
			d += take;
			len -= take;
			if (c->left == 0)
				c->state = BU_CHUNK_LINE;
			break;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static char buf[BU_READ];
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct epoll_event ev, evs[64];
	int port = 0, lfd, ep, one = 1, i;

	for (i = 1; i + 1 < argc; i += 2)
		if (strcmp(argv[i], "--port") == 0)
			port = atoi(argv[i + 1]);
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "usage: body_upstream --port P\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd == -1 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(lfd, 4096) == -1) {
		perror("body_upstream: listen");
		return 1;
	}
	ep = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);

		for (i = 0; i < n; i++) {
			struct bu_conn *c = evs[i].data.ptr;
			ssize_t got;

			if (c == NULL) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

				if (fd == -1)
					continue;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				c = calloc(1, sizeof(*c));
				if (c == NULL) {
					close(fd);
					continue;
				}
				c->fd = fd;
				ev.events = EPOLLIN;
				ev.data.ptr = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				continue;
			}
			got = recv(c->fd, buf, sizeof(buf), 0);
			if (got == -1 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got <= 0 || bu_feed(c, buf, (size_t)got) != 0) {
				close(c->fd); /* also leaves the epoll set */
				free(c);
			}
		}
	}
}
